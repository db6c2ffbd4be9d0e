"""Reading the data set: pages of rows for every sort, order and filter, each by
one script, and the aggregates."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from myapp.store import segment
from myapp.store.base import MEMBER, StoreBase
from myapp.store.segment import CATEGORIES, CATEGORY_INDEX

SORT_FIELDS = ("created_at", "value")


@dataclass(frozen=True)
class Page:
    total: int
    rows: list[dict[str, Any]]


class Reading(StoreBase):
    """Pages, spans, totals and the summary."""

    def version(self) -> int:
        """Change counter: a page compares it to decide whether to refetch rows."""
        return int(self.redis.get(self.key("version")) or 0)

    def run_totals(self) -> Iterator[tuple[str, dict[str, tuple[int, float]]]]:
        """(created_at, {category: (rows, sum of values)}) of each committed run
        still in the data set, from its `segs` entry: one short HSCAN page at a time
        (a run's rows share its creation time), never the rows themselves."""
        n = len(CATEGORIES)
        for _, meta in self.redis.hscan_iter(self.key("segs"), count=500):
            fields = meta.decode().split(" ", 3 + 2 * n)
            counts, sums = fields[3 : 3 + n], fields[3 + n : 3 + 2 * n]
            yield (
                fields[2],
                {
                    c: (int(counts[i]), float(sums[i]))
                    for i, c in enumerate(CATEGORIES)
                    if int(counts[i])
                },
            )

    def run_span(self, run_id: str) -> tuple[int, int] | None:
        """(first id, rows) of a committed run; None if it has not committed."""
        span = self._call("SPAN", run_id)
        return None if span is None else (int(span[0]), int(span[1]))

    def page(
        self,
        *,
        offset: int = 0,
        limit: int = 100,
        sort: Literal["created_at", "value"] = "created_at",
        order: Literal["asc", "desc"] = "desc",
        run_id: str | None = None,
        category: str | None = None,
    ) -> Page:
        """One page of rows, read by one script: O(log n + limit) in the data set's
        size, O(limit) within a run, for every sort, order and filter."""
        total, runs, *pieces = self._call(
            "PAGE",
            offset,
            limit,
            sort,
            "1" if order == "desc" else "0",
            run_id or "",
            "" if category is None else CATEGORY_INDEX[category] + 1,
        )
        runs = json.loads(runs)
        made_by = {runs[i]: _run_of(runs[i + 1]) for i in range(0, len(runs), 2)}
        rows = []
        for seg, row, value, category_number in _decode(pieces):
            first, run, created = made_by[seg]
            rows.append(
                {
                    "id": first + row,
                    "run_id": run,
                    "created_at": created,
                    "value": value,
                    "category": CATEGORIES[category_number - 1],
                }
            )
        if order == "desc":
            rows.reverse()
        return Page(int(total), rows)

    def summary(self, category: str | None = None) -> dict[str, Any]:
        """Count, mean, min, max and per-category counts, from running aggregates
        and the ends of the value indexes."""
        answer = self._call(
            "SUMMARY", "" if category is None else CATEGORY_INDEX[category] + 1
        )
        n = len(CATEGORIES)
        categories = (category,) if category else CATEGORIES
        counts = {c: int(answer[CATEGORY_INDEX[c]]) for c in categories}
        total = sum(float(answer[n + CATEGORY_INDEX[c]]) for c in categories)
        count = sum(counts.values())
        low, high = answer[2 * n], answer[2 * n + 1]
        return {
            "count": count,
            "mean": round(total / count, 6) if count else None,
            "min": float(low) if low else None,
            "max": float(high) if high else None,
            "per_category": counts,
        }


def _run_of(meta: str) -> tuple[int, str, str]:
    """(first id, run id, created_at) from a run's `segs` entry: "first n created
    n_c… sum_c… run_id", the run id last since it may hold spaces."""
    fields = meta.split(" ", 3 + 2 * len(CATEGORIES))
    return int(fields[0]), fields[-1], fields[2]


def _decode(pieces: list[list[Any]]) -> Iterator[tuple[int, int, float, int]]:
    """(segment, row, value, category number from 1) of each row of PAGE's pieces,
    in order (the layouts are in segment.py and scripts.PAGE)."""
    for kind, *piece in pieces:
        if kind == b"A":
            seg, first, data = piece
            for i, (value, category) in enumerate(segment.ROW.iter_unpack(data)):
                yield seg, first + i, value, category + 1
        elif kind == b"D":
            seg, data = piece
            for value, row, category in segment.BY_VALUE.iter_unpack(data):
                yield seg, row, value, category + 1
        elif kind == b"B":
            seg, category, data = piece
            for value, row in segment.BY_VALUE_IN_CATEGORY.iter_unpack(data):
                yield seg, row, value, category
        elif kind == b"C":
            seg, category, rows, low, span = piece
            numbers = struct.unpack(f">{len(rows) // 4}I", rows)
            for i, row in enumerate(numbers):
                at = (row - low if low >= 0 else i) * segment.ROW.size
                yield seg, row, segment.ROW.unpack_from(span, at)[0], category
        elif kind == b"V":
            members, categories = piece
            for (value, seg, row), category in zip(
                MEMBER.iter_unpack(members), categories, strict=True
            ):
                yield seg, row, value, category - ord("0")
        else:
            raise ValueError(f"unknown page piece {kind!r}")
