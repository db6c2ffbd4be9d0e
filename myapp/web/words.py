"""The words for a run's state (myapp.runs.words) in the templates: the
`state_word` filter, and the table handed to run.js on the page, so a live update
and a reload say the same thing. The JSON API keeps the contract's states."""

from __future__ import annotations

from flask import Flask

from myapp.runs.words import STATE_WORDS, state_word


def words_init_app(app: Flask) -> None:
    app.add_template_filter(state_word)
    app.add_template_global(STATE_WORDS, "STATE_WORDS")
