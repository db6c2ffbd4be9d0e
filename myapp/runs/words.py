"""The words people read for a run's state. The JSON API keeps the contract's
states (PENDING, STARTED, …); the HTML pages and Dash say "queued", "running",
"cancelled". One table for both, so every page says the same thing."""

from __future__ import annotations

STATE_WORDS: dict[str, str] = {
    "PENDING": "queued",
    "STARTED": "running",
    "PROGRESS": "running",
    "RETRY": "waiting to retry",
    "SUCCESS": "finished",
    "FAILURE": "failed",
    "REVOKED": "cancelled",
}


def state_word(state: str) -> str:
    """`state` as people say it ("cancelled" for REVOKED)."""
    return STATE_WORDS.get(state, state.lower())
