"""GET /metrics: Prometheus' text format, for `viewer` tokens or, with
METRICS_PUBLIC=1, anyone.

The counters come from `myapp.metrics` (every process of this host); the figures
that describe a state are read here, at scrape time: active runs from the run table,
queued messages from the broker's lists, and the age of beat's last tick.
"""

from __future__ import annotations

import logging
import time

from celery import Celery
from flask import Blueprint, Response, current_app, jsonify
from flask_login import current_user
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from myapp import beat
from myapp.extensions import db, get_redis
from myapp.metrics import collect_registry
from myapp.models import ACTIVE_STATES, Run
from myapp.runs.reaper import broker_lists

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)


def may_read_metrics() -> bool:
    """Whether this request may read /metrics: anyone when METRICS_PUBLIC is on
    (web_init_app then also lets it past the sign-in gate), otherwise a signed-in
    caller or a token, whose role is `viewer` or above (every role is)."""
    return bool(current_app.config["METRICS_PUBLIC"]) or current_user.is_authenticated


@bp.get("/metrics")
def get_metrics():
    if not may_read_metrics():
        body = {
            "error": {
                "code": "unauthorized",
                "message": "a viewer token is required to read metrics "
                "(or set METRICS_PUBLIC=1)",
                "fields": {},
            }
        }
        return jsonify(body), 401, {"WWW-Authenticate": "Bearer"}
    registry = collect_registry([LiveState(current_app.extensions["celery"])])
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


class LiveState(Collector):
    """Figures read when scraped. A source that does not answer is left out (and
    `myapp_scrape_source_up` says so) rather than failing the whole scrape."""

    def __init__(self, celery_app: Celery):
        self.celery_app = celery_app

    def collect(self):
        up = GaugeMetricFamily(
            "myapp_scrape_source_up",
            "1 if the source answered this scrape, 0 if not.",
            labels=["source"],
        )
        for name, read in (
            ("database", self._active_runs),
            ("redis", self._redis_figures),
        ):
            try:
                families = read()
            except Exception as exc:  # a scrape must answer even when one is down
                log.warning("metrics: %s unreachable (%s)", name, type(exc).__name__)
                if name == "database":
                    db.session.rollback()
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from families
        yield up

    def _active_runs(self) -> list[GaugeMetricFamily]:
        active = GaugeMetricFamily(
            "myapp_runs_active",
            "Runs PENDING, STARTED, PROGRESS or RETRY now.",
            labels=["task", "state"],
        )
        rows = db.session.execute(
            select(Run.task, Run.state, func.count())
            .where(Run.state.in_(ACTIVE_STATES))
            .group_by(Run.task, Run.state)
        ).all()
        for task, state, count in rows:
            active.add_metric([task, state], count)
        return [active]

    def _redis_figures(self) -> list[GaugeMetricFamily]:
        client = get_redis()
        lists = broker_lists(self.celery_app)
        with client.pipeline(transaction=False) as pipe:
            for _, name in lists:
                pipe.llen(name)
            pipe.get(beat.tick_key(self.celery_app))
            *lengths, tick = pipe.execute()
        queued = GaugeMetricFamily(
            "myapp_queue_messages",
            "Messages waiting in a broker queue (not yet taken by a worker).",
            labels=["queue"],
        )
        totals: dict[str, int] = {}
        for (queue, _), length in zip(lists, lengths, strict=True):
            totals[queue] = totals.get(queue, 0) + int(length)
        for queue, length in totals.items():
            queued.add_metric([queue], length)
        families = [queued]
        bound = GaugeMetricFamily(
            "myapp_beat_takeover_bound_seconds",
            "Beat's last tick older than this: no beat is sending the schedule.",
            value=beat.takeover_bound(self.celery_app),
        )
        families.append(bound)
        if tick is not None:
            families.append(
                GaugeMetricFamily(
                    "myapp_beat_last_tick_age_seconds",
                    "Seconds since the sending beat last went over the schedule.",
                    value=max(0.0, time.time() - float(tick)),
                )
            )
        return families
