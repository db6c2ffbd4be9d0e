"""Every interval at which the Dash pages ask the server, in one place (milliseconds,
as `dcc.Interval` and Dash's background callbacks take them).

A run being followed, in either mode, is asked about fast while it is young (a
0-second run reports within about a tenth of a second of starting), then less often:
every tenth of its age, capped at AGED_POLL_MS. A ten-minute run so costs about six
hundred polls per open page instead of six thousand. Queued runs apply the rule on
the server (`run_poll_ms` sets their dcc.Interval); background jobs in the browser
(`assets/run_poll.js`, given `browser_policy()`), because Dash fixes a background
callback's interval when it is declared.
"""

from __future__ import annotations

# The first polls of a run in flight: a queued run's row, a background run's Dash job.
RUN_POLL_MS = 100
# A run is then polled every 1/AGE_DIVISOR of its age, up to AGED_POLL_MS.
AGE_DIVISOR = 10
AGED_POLL_MS = 1000
# A queued run still PENDING after this long is left to the history page: its page
# stops polling it (the run itself is not abandoned).
GIVE_UP_MS = 300_000
# The browser forgets a background job it has not polled for this long.
FORGET_JOB_MS = 60_000
# A polled callback slower than its interval has its responses dropped by the
# renderer (plotly/dash#1613): the next poll waits at least this many times as long
# as the last one took, and never longer than MAX_POLL_MS.
POLL_SLOWDOWN = 3
MAX_POLL_MS = 5000

# The data set's change counter (two GETs; the grid refetches only when it moved).
DATA_POLL_MS = 2000
# The schedule line under the form.
SCHEDULE_POLL_MS = 5000
# The history page while any listed run is in flight; MAX_POLL_MS when all ended.
HISTORY_POLL_MS = 2000


def run_poll_ms(age_ms: float, took_ms: float = 0.0) -> int:
    """The next poll interval for a run `age_ms` old whose last poll took `took_ms`."""
    by_age = min(AGED_POLL_MS, age_ms / AGE_DIVISOR)
    return int(min(MAX_POLL_MS, max(RUN_POLL_MS, by_age, POLL_SLOWDOWN * took_ms)))


def history_poll_ms(any_active: bool) -> int:
    return HISTORY_POLL_MS if any_active else MAX_POLL_MS


def browser_policy() -> dict[str, int]:
    """The rule for background jobs, as the page's script reads it (a meta tag)."""
    return {
        "first_ms": RUN_POLL_MS,
        "aged_ms": AGED_POLL_MS,
        "age_divisor": AGE_DIVISOR,
        "forget_ms": FORGET_JOB_MS,
    }
