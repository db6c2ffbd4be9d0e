"""A run's rows packed into one binary string: its segment.

A segment is written once and never changed, so it can be laid out for reading:
every page of a run, and the not-yet-indexed part of a value-sorted page of the
whole data set, is one `GETRANGE` at a computed offset. With `n` rows, `n_c` of them
in category `c` (categories in `CATEGORIES` order, `P_c` = rows of the categories
before `c`), the sections are, all big-endian:

| section | offset | record (bytes) | order |
|---|---|---|---|
| A: rows | 0 | value `d`, category `B` (9) | creation: row i is id first+i |
| D: by value | 9n | value `d`, row `I`, category `B` (13) | (value, row) |
| B: by value, per category | 22n + 12 P_c | value `d`, row `I` (12) | (value, row) |
| C: rows per category | 34n + 4 P_c | row `I` (4) | creation |

38 bytes a row. The Lua scripts in `scripts.py` read the same layout (`SIZES`).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

# A row's category; tasks take it as a parameter type (a choice on every form).
Category = Literal["alpha", "beta", "gamma", "delta"]
CATEGORIES: tuple[str, ...] = get_args(Category)
CATEGORY_INDEX = {name: index for index, name in enumerate(CATEGORIES)}

ROW = struct.Struct(">dB")  # section A
BY_VALUE = struct.Struct(">dIB")  # section D
BY_VALUE_IN_CATEGORY = struct.Struct(">dI")  # section B
ROW_IN_CATEGORY = struct.Struct(">I")  # section C
BYTES_PER_ROW = ROW.size + BY_VALUE.size + BY_VALUE_IN_CATEGORY.size + 4

# A run's row numbers are stored in four bytes.
MAX_ROWS = 2**32 - 1


def offset_by_value(rows: int, counts: Sequence[int], category: int) -> int:
    """Byte offset of category `category`'s part of section B (0-based category)."""
    return (ROW.size + BY_VALUE.size) * rows + BY_VALUE_IN_CATEGORY.size * sum(
        counts[:category]
    )


@dataclass(frozen=True)
class Segment:
    """A run's rows, packed, with the per-category figures the data set keeps."""

    data: bytes
    rows: int
    counts: tuple[int, ...]  # rows per category, in CATEGORIES order
    sums: tuple[float, ...]  # sum of values per category


def pack(rows: Sequence[tuple[float, str]]) -> Segment:
    """Pack (value, category) pairs in creation order; raises ValueError for a
    category that is not one of CATEGORIES or a value that is not finite."""
    if len(rows) > MAX_ROWS:
        raise ValueError(f"a run holds at most {MAX_ROWS} rows")
    values: list[float] = []
    categories: list[int] = []
    for value, category in rows:
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"row values must be finite numbers, got {value!r}")
        try:
            categories.append(CATEGORY_INDEX[category])
        except KeyError:
            raise ValueError(
                f"unknown category {category!r}; expected one of {CATEGORIES}"
            ) from None
        values.append(number)
    n = len(values)
    # (value, row) is the one total order of every value index: ties in value are
    # broken by row, i.e. by id (the sort is stable and rows start in order).
    by_value = sorted(range(n), key=values.__getitem__)
    per_category: list[list[int]] = [[] for _ in CATEGORIES]
    for i in by_value:
        per_category[categories[i]].append(i)
    in_creation: list[list[int]] = [[] for _ in CATEGORIES]
    for i, c in enumerate(categories):
        in_creation[c].append(i)

    parts = [b"".join(ROW.pack(v, c) for v, c in zip(values, categories, strict=True))]
    parts.append(b"".join(BY_VALUE.pack(values[i], i, categories[i]) for i in by_value))
    parts.extend(
        b"".join(BY_VALUE_IN_CATEGORY.pack(values[i], i) for i in rows_of)
        for rows_of in per_category
    )
    parts.extend(struct.pack(f">{len(rows_of)}I", *rows_of) for rows_of in in_creation)
    data = b"".join(parts)
    assert len(data) == BYTES_PER_ROW * n
    return Segment(
        data,
        n,
        tuple(len(rows_of) for rows_of in in_creation),
        tuple(math.fsum(values[i] for i in rows_of) for rows_of in in_creation),
    )
