"""Migrations build the schema from nothing, and it matches the models."""

from __future__ import annotations

import json

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from myapp import create_app
from myapp.extensions import db


def schema_diff(app) -> list:
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def test_upgrade_builds_an_empty_sqlite_database_that_matches_the_models(tmp_path):
    url = "sqlite:///" + str(tmp_path / "fresh.sqlite")
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "INSTANCE_PATH": str(tmp_path)})
    with app.app_context():
        upgrade()
        assert "runs" in inspect(db.engine).get_table_names()
    assert schema_diff(app) == []
    with app.app_context():
        downgrade(revision="base")
        assert "runs" not in inspect(db.engine).get_table_names()


def test_the_test_database_was_built_by_migrations_and_matches(app):
    # The session fixture migrated TEST_DATABASE_URL (PostgreSQL in CI) from empty.
    assert schema_diff(app) == []


def test_upgrade_creates_the_two_schedules_from_todays_settings(tmp_path):
    url = "sqlite:///" + str(tmp_path / "seeded.sqlite")
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "INSTANCE_PATH": str(tmp_path),
            "SCHEDULE_SECONDS": 45,
            "PRUNE_AFTER_DAYS": 7,
        }
    )
    with app.app_context():
        upgrade()
        rows = db.session.execute(
            text(
                "SELECT name, task, params, every_s, cron, enabled, created_by "
                "FROM schedules ORDER BY name"
            )
        ).all()
    assert [
        (r.name, r.task, r.every_s, r.cron, bool(r.enabled), r.created_by) for r in rows
    ] == [
        ("generate-data", "generate_data", 45, None, True, None),
        ("prune-runs", "prune_runs", 86400, None, True, None),
    ]
    assert [
        json.loads(r.params) if isinstance(r.params, str) else r.params for r in rows
    ] == [{}, {"older_than_days": 7}]
