"""The words pages use for a run's state. The JSON API keeps the contract's states
(PENDING, STARTED, …); people read "queued", "running", "cancelled". One table,
used by the templates (the `state_word` filter) and handed to run.js on the page,
so a live update and a reload say the same thing."""

from __future__ import annotations

from flask import Flask

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
    return STATE_WORDS.get(state, state.lower())


def words_init_app(app: Flask) -> None:
    app.add_template_filter(state_word)
    app.add_template_global(STATE_WORDS, "STATE_WORDS")
