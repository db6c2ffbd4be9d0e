def run(stack, quick):
    return []
