"""The run panel every page that starts a task carries (the main page and every task
page): the contract's `mode-select`, `run-button`, `cancel-button`, `run-progress`
and `app-status`, and the stores its callbacks (`run_callbacks`) keep.

Which task the page starts, and which form it shows, is the `run-page` store
(`{"task": …, "form": "main" | "task"}`), written by the router.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dash import dcc, html

from myapp.dashboard import core, forms, ids, polling
from myapp.dashboard.core import Mode
from myapp.dashboard.run_log import log_block
from myapp.models import Run


@dataclass(frozen=True)
class Page:
    """The task a page starts and the form it shows it with."""

    task: str
    form: str  # forms.MAIN_FORM or forms.TASK_FORM

    @property
    def plain(self) -> bool:
        """Whether the page's status lines use people's words (the task pages)."""
        return self.form == forms.TASK_FORM

    def store(self) -> dict[str, str]:
        return {"task": self.task, "form": self.form}


def page_of(value: Any) -> Page | None:
    """The `run-page` store's value, or None for anything the router never wrote."""
    if not isinstance(value, dict):
        return None
    task, form = value.get("task"), value.get("form")
    if isinstance(task, str) and form in (forms.MAIN_FORM, forms.TASK_FORM):
        return Page(task, form)
    return None


def plain_words(page: Any) -> bool:
    found = page_of(page)
    return found is not None and found.plain


# -- layout -----------------------------------------------------------------------


def mode_and_buttons(following: Run | None, *, may_start: bool = True) -> list[Any]:
    """The mode selector and the run and cancel buttons."""
    return [
        html.Div(
            className="field",
            children=[
                html.Label("Run it as", htmlFor=ids.MODE_SELECT),
                dcc.RadioItems(
                    id=ids.MODE_SELECT,
                    options=[
                        {
                            "label": "background callback",
                            "value": Mode.BACKGROUND,
                            "disabled": not may_start,
                        },
                        {
                            "label": "queued Celery task",
                            "value": Mode.QUEUED,
                            "disabled": not may_start,
                        },
                    ],
                    value=Mode.BACKGROUND,
                    className="radio",
                ),
            ],
        ),
        html.Div(
            className="buttons",
            children=[
                html.Button(
                    "Run",
                    id=ids.RUN_BUTTON,
                    disabled=following is not None or not may_start,
                ),
                html.Button(
                    "Cancel",
                    id=ids.CANCEL_BUTTON,
                    className="danger",
                    disabled=following is None,
                ),
            ],
        ),
    ]


def progress_block(following: Run | None, *, plain: bool) -> html.Div:
    value, maximum, text = core.progress_of(following)
    status = "Ready."
    if following is not None:
        status = core.describe(following, mode=Mode.of(following), plain=plain)
    return html.Div(
        className="progress-block",
        children=[
            html.Progress(id=ids.RUN_PROGRESS, value=value, max=maximum),
            html.Span(id=ids.RUN_PROGRESS_TEXT, className="muted", children=text),
            html.Div(id=ids.APP_STATUS, role="status", children=status),
            log_block(),
        ],
    )


def stores(page: Page, following: Run | None) -> list[Any]:
    """The state the panel's callbacks keep in the page."""
    return [
        dcc.Store(id=ids.RUN_PAGE, data=page.store()),
        dcc.Store(id=ids.BG_REQUEST),
        dcc.Store(id=ids.BG_RUN),
        dcc.Store(id=ids.BG_DONE),
        dcc.Store(id=ids.QUEUED_DONE),
        dcc.Store(id=ids.RUN_SHOWN),
        dcc.Store(
            id=ids.QUEUED_RUN,
            data={"id": following.id} if following is not None else None,
        ),
        dcc.Interval(
            id=ids.POLL_INTERVAL,
            interval=polling.RUN_POLL_MS,
            disabled=following is None,
        ),
    ]
