"""Pydantic's validation errors as our short field messages, the same on every
surface."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from myapp.tasks.fields import ParamField, number


def plain_message(
    kind: str, ctx: Mapping[str, Any], spec: ParamField, text: str
) -> str:
    """Pydantic's error as our short field message, the same on every surface."""
    bounds = {
        "greater_than_equal": ("must be at least", "ge"),
        "greater_than": ("must be more than", "gt"),
        "less_than_equal": ("must be at most", "le"),
        "less_than": ("must be less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"{words} {number(ctx[key])}"
    if kind.startswith("int_"):
        return "must be an integer"
    if kind == "finite_number":
        return "must be a finite number"
    if kind.startswith("float_"):
        return "must be a number"
    if kind.startswith("bool_"):
        return "must be true or false"
    if kind in ("literal_error", "enum"):
        return "must be one of " + ", ".join(spec.choices)
    if kind.startswith("datetime_") or (
        kind.startswith("date") and spec.kind == "datetime"
    ):
        return "must be a date and time (YYYY-MM-DDTHH:MM)"
    if kind.startswith("date_"):
        return "must be a date (YYYY-MM-DD)"
    if kind == "string_too_short":
        n = ctx.get("min_length", 1)
        return "must not be empty" if n == 1 else f"must be at least {n} characters"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} items"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items"
    if kind == "list_type":
        return "must be a list"
    if kind == "string_type":
        return "must be a string"
    # Anything rarer: pydantic's own words, in our voice.
    return text.replace("Input should be", "must be").replace("Value error, ", "")
