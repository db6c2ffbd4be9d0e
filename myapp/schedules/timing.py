"""When a schedule fires: an interval or a cron expression in an IANA time zone.

Every time here is naive UTC, as the database stores it. Fire times are computed
from the row alone (its anchor and the last fire time sent), never from when a beat
happened to wake up, so two beats that both think they hold the lock compute the
same fire time, and the database's unique (schedule_id, fire_at) keeps one run.

- interval: fires at `anchor`, then every `every_s` seconds after the last fire;
- cron: fires at each time the expression names, in its time zone (cronsim: DST
  gaps and repeats as cron does them);
- a stretch with no beat (or no Redis) is caught up with one fire, the latest one
  due, never one per missed interval;
- an edit never fires by itself: the next fire is the first one after it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError

CRON_FIELDS = 5


def parse_cron(expr: str) -> str:
    """The expression with its fields separated by one space; ValueError with a
    message for people when it is not five valid cron fields."""
    fields = expr.split()
    if len(fields) != CRON_FIELDS:
        raise ValueError(
            f"must have five fields (minute hour day month weekday), got {len(fields)}"
        )
    text = " ".join(fields)
    try:
        CronSim(text, datetime(2000, 1, 1))
    except CronSimError as exc:
        problem = str(exc).lower()
        raise ValueError(f"is not a valid cron expression: {problem}") from None
    except Exception:  # the parser's own slips on odd text are still bad input
        raise ValueError("is not a valid cron expression") from None
    return text


def parse_timezone(name: str) -> str:
    """`name` if it is an IANA time zone; ValueError otherwise."""
    if name not in _zone_names():
        raise ValueError("is not an IANA time zone name (e.g. UTC, Europe/Paris)")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("is not an IANA time zone name") from None
    return name


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    # ZoneInfo() alone also opens relative paths and odd spellings; the set of
    # names is the IANA database's own list.
    return frozenset(available_timezones()) | {"UTC"}


@dataclass(frozen=True)
class Timing:
    """A schedule's when: `every_s` or `cron` (with `timezone`)."""

    every_s: int | None
    cron: str | None
    timezone: str = "UTC"

    def due(
        self,
        *,
        anchor: datetime,
        last_fire: datetime | None,
        now: datetime,
        changed: datetime | None = None,
    ) -> datetime | None:
        """The latest fire time at or before `now` not sent yet, or None. A fire
        time before `changed` (the row's last edit) is never due: an edit, a resume
        included, does not fire by itself; the next fire is the first after it."""
        if self.every_s:
            first = self._first_interval_fire(anchor, last_fire)
            if first > now:
                return None
            step = timedelta(seconds=self.every_s)
            latest = first + step * math.floor((now - first) / step)
        else:
            latest = self._cron_before(now)
            if latest is None or latest <= (last_fire or anchor):
                return None
        if changed is not None and latest < changed.replace(microsecond=0):
            return None
        return latest

    def upcoming(
        self,
        *,
        anchor: datetime,
        last_fire: datetime | None,
        now: datetime,
        count: int = 3,
    ) -> list[datetime]:
        """The next `count` fire times after `now`."""
        if self.every_s:
            first = self._first_interval_fire(anchor, last_fire)
            step = timedelta(seconds=self.every_s)
            if first <= now:
                first += step * (math.floor((now - first) / step) + 1)
            return [first + step * i for i in range(count)]
        zone = ZoneInfo(self.timezone)
        times = CronSim(self.cron or "", _local(now, zone))
        return [_utc(next(times)) for _ in range(count)]

    def describe(self) -> str:
        """In words: "every 90 s", "At 02:00 every day (Europe/Paris)"."""
        if self.every_s:
            return "every " + _duration(self.every_s)
        try:
            words = CronSim(self.cron or "", datetime(2000, 1, 1)).explain()
        except (CronSimError, ValueError):
            return f"cron {self.cron}"
        return f"{words} ({self.timezone})"

    def _first_interval_fire(
        self, anchor: datetime, last_fire: datetime | None
    ) -> datetime:
        if last_fire is None:
            # Whole seconds: fire times read cleanly and compare exactly.
            return anchor.replace(microsecond=0)
        return last_fire + timedelta(seconds=self.every_s or 0)

    def _cron_before(self, now: datetime) -> datetime | None:
        zone = ZoneInfo(self.timezone)
        times = CronSim(self.cron or "", _local(now, zone), reverse=True)
        try:
            return _utc(next(times))
        except StopIteration:
            return None


def _local(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.replace(tzinfo=UTC).astimezone(zone)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            amount = seconds // size
            if unit == "day":
                return "day" if amount == 1 else f"{amount} days"
            return f"{amount} {unit}"
    return f"{seconds} s"
