"""The documentation holds together: every relative link in README.md, CHANGELOG.md
and docs/*.md names a file that exists and, with a #fragment, a heading of that
file (GitHub's slugs), so a page moved or a heading renamed breaks this test, not a
reader's click. No network: links with a scheme are not followed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^ {0,3}(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
# [text](target) and ![alt](target); the text may hold `code` but no brackets.
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")


def documents() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted(ROOT.glob("docs/*.md"))]


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """Line numbers and lines outside fenced code blocks (where `#` and `[x](y)`
    are code, not headings or links)."""
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
        elif fence is not None and line.lstrip().startswith(fence):
            fence = None
        elif fence is None:
            yield number, line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text (links and code spans reduced to
    their text), lower case, with everything but letters, digits, `_`, `-` and
    spaces dropped and spaces made `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = CODE_SPAN.sub(lambda m: m.group(2), text)
    text = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in `path`; a repeated one gets -1, -2, … as on GitHub."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, line in prose_lines(path.read_text()):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> Iterator[tuple[int, str]]:
    """Every link target in `path`'s prose (code spans and blocks left out)."""
    for number, line in prose_lines(path.read_text()):
        reference = REFERENCE_LINK.match(line)
        if reference:
            yield number, reference.group(1)
            continue
        for match in INLINE_LINK.finditer(CODE_SPAN.sub("", line)):
            yield number, match.group(1)


def broken_links(path: Path) -> list[str]:
    """What is wrong with each relative link of `path`, one line each."""
    problems = []
    for number, target in links(path):
        if not target or SCHEME.match(target):
            continue
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        where = f"{shown}:{number}"
        file_part, _, fragment = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            problems.append(f"{where}: {target}: no such file")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            problems.append(f"{where}: {target}: no heading #{fragment}")
    return problems


def test_the_pages_exist():
    # The README points at these; a page lost in a move fails here by name.
    pages = ("api", "architecture", "benchmarks", "operations", "reliability")
    for page in (*pages, "schedules", "security", "tasks"):
        assert (ROOT / "docs" / f"{page}.md").is_file(), page
    assert (ROOT / "CHANGELOG.md").is_file()


@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    problems = broken_links(path)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_a_broken_link_or_anchor_is_reported(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## Redis Sentinel (failover)\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[ok](other.md#redis-sentinel-failover) and [top](#page)\n"
        "[gone](missing.md), [bad anchor](other.md#nowhere), [self](#nowhere-here)\n"
        "`[in code](missing.md)` and https://example.com are not links to check\n\n"
        "```sh\n# not a heading\n[nor](a-link.md)\n```\n"
    )
    found = broken_links(page)
    assert [p.split(": ", 1)[1] for p in found] == [
        "missing.md: no such file",
        "other.md#nowhere: no heading #nowhere",
        "#nowhere-here: no heading #nowhere-here",
    ]


def test_slugs_are_githubs():
    assert slug("Following a run: its log and `?wait=`") == (
        "following-a-run-its-log-and-wait"
    )
    assert slug("3. What appears where") == "3-what-appears-where"
    assert slug("Redis (managed)") == "redis-managed"
    assert slug("Users, roles and tokens") == "users-roles-and-tokens"


def test_the_readme_keeps_the_two_commands():
    # CI runs "exactly the README's test command" (.ci/run): the README's first
    # code block names both, and both are Makefile targets.
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    assert first_block.splitlines()[0].startswith("make run ")
    assert first_block.splitlines()[1].startswith("make test ")
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
