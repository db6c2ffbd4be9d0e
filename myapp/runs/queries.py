"""Reading the run history: one run, and pages of runs newest first (keyset paging)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from sqlalchemy import and_, or_, select

from myapp.extensions import db
from myapp.models import SOURCES, STATES, USER_NAME_LENGTH, Run
from myapp.tasks import ValidationError, task_registry

# A cursor this API hands out is ~80 characters; anything far longer is not one.
MAX_CURSOR_LENGTH = 200
# What a decoded cursor looks like: ["<ISO time>", "<run id>"], nothing nested.
_CURSOR_SHAPE = re.compile(r'\["[0-9T:.+\-]{10,40}", "[0-9A-Za-z\-_]{1,64}"\]')


def get_run(run_id: str) -> Run | None:
    """The run with that id, or None (ids longer than any we issue included, and ids
    with a NUL, which PostgreSQL refuses to compare with rather than finding none)."""
    if len(run_id) > 64 or "\x00" in run_id:
        return None
    return db.session.get(Run, run_id)


@dataclass(frozen=True)
class RunFilter:
    """Which runs a listing shows; every field is checked against its choices."""

    task: str | None = None
    state: str | None = None
    source: str | None = None
    # A user name; any name is a valid filter (one nobody has matches nothing).
    created_by: str | None = None
    # A schedule's id (of one since deleted too: its runs stay).
    schedule_id: int | None = None

    FIELDS: ClassVar[tuple[str, ...]] = (
        "task",
        "state",
        "source",
        "created_by",
        "schedule_id",
    )

    def __post_init__(self) -> None:
        errors: dict[str, str] = {}
        for name, choices in (
            ("task", tuple(task_registry())),
            ("state", STATES),
            ("source", SOURCES),
        ):
            value = getattr(self, name)
            if value is not None and value not in choices:
                errors[name] = "must be one of " + ", ".join(choices)
        if self.created_by is not None and (
            not isinstance(self.created_by, str)
            or len(self.created_by) > USER_NAME_LENGTH
        ):
            errors["created_by"] = (
                f"must be a name of at most {USER_NAME_LENGTH} characters"
            )
        if errors:
            raise ValidationError(errors)

    def query_args(self) -> dict[str, str]:
        """The filter as query arguments, for links to the next page."""
        return {k: v for k, v in vars(self).items() if v is not None}


def list_runs(
    filters: RunFilter, *, limit: int, cursor: str | None = None
) -> tuple[list[Run], str | None]:
    """Newest first; returns a page and the cursor of the next page (or None).
    Raises ValidationError for a cursor this API did not hand out."""
    query = select(Run).order_by(Run.created_at.desc(), Run.id.desc())
    for column, value in (
        (Run.task, filters.task),
        (Run.state, filters.state),
        (Run.source, filters.source),
        (Run.created_by, filters.created_by),
        (Run.schedule_id, filters.schedule_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if cursor is not None:
        created, run_id = decode_cursor(cursor)
        query = query.where(
            or_(
                Run.created_at < created,
                and_(Run.created_at == created, Run.id < run_id),
            )
        )
    rows = db.session.scalars(query.limit(limit + 1)).all()
    page = list(rows[:limit])
    next_cursor = encode_cursor(page[-1]) if len(rows) > limit else None
    return page, next_cursor


def encode_cursor(run: Run) -> str:
    raw = json.dumps([run.created_at.isoformat(), run.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a cursor points after. The text is checked against the
    one shape we encode before it is parsed, so no input can make the parser
    recurse or allocate much."""
    bad = ValidationError({"cursor": "is not a cursor this API returned"})
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise bad
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad from None
    if not _CURSOR_SHAPE.fullmatch(text):
        raise bad
    created, run_id = json.loads(text)
    try:
        return datetime.fromisoformat(created), run_id
    except ValueError:
        raise bad from None
