"""create_app: config in one order, many apps per process, nothing shared."""

from __future__ import annotations

import pytest
from flask import current_app

from myapp import PROJECT_ROOT, config, create_app, localstack
from myapp.config import database_url
from myapp.extensions import db


def test_two_apps_in_one_process_keep_their_own_state(make_app, tmp_path):
    first = make_app(MAX_ROWS_PER_RUN=5, DATA_PREFIX="first")
    second = make_app(MAX_ROWS_PER_RUN=50, DATA_PREFIX="second")
    for name in ("celery", "redis", "store"):
        assert first.extensions[name] is not second.extensions[name]
    # One unbound SQLAlchemy extension, one engine per app.
    with first.app_context():
        first_engine = db.engine
    with second.app_context():
        assert db.engine is not first_engine
    assert (
        first.extensions["celery"].tasks["generate_data"]
        is not (second.extensions["celery"].tasks["generate_data"])
    )
    body = {"rows": 20}
    assert (
        first.test_client().post("/api/tasks/generate_data/runs", json=body).status_code
        == 422
    )
    assert (
        second.test_client()
        .post("/api/tasks/generate_data/runs", json=body)
        .status_code
        == 202
    )
    # Defaults are fresh per app: changing one app's config does not touch another's.
    first.config["CELERY"] = {"x": 1}
    assert "CELERY" not in second.config


def test_each_celery_task_runs_in_its_own_flask_app(make_app):
    first, second = make_app(DATA_PREFIX="one"), make_app(DATA_PREFIX="two")
    seen = {}
    for app in (first, second):
        celery_app = app.extensions["celery"]

        @celery_app.task(name="probe", shared=False)
        def probe():
            return current_app.config["DATA_PREFIX"]

        seen[celery_app] = probe
    # Called outside any app context, each task pushes its own app's context.
    assert [task() for task in seen.values()] == ["one", "two"]


def test_environment_is_read_when_the_factory_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/3")
    monkeypatch.setenv("MAX_ROWS_PER_RUN", "7")
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db.example/app")
    app = create_app({"INSTANCE_PATH": str(tmp_path)})
    assert app.config["MAX_ROWS_PER_RUN"] == 7
    assert (
        app.config["SQLALCHEMY_DATABASE_URI"]
        == "postgresql+psycopg://u:p@db.example/app"
    )
    assert app.extensions["celery"].conf.broker_url == "redis://127.0.0.1:1/3"
    monkeypatch.setenv("MAX_ROWS_PER_RUN", "many")
    with pytest.raises(RuntimeError, match="MAX_ROWS_PER_RUN must be an integer"):
        create_app({"INSTANCE_PATH": str(tmp_path)})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAX_ACTIVE_RUNS", "0", "MAX_ACTIVE_RUNS must be at least 1, got 0"),
        ("MAX_ATTEMPTS", "-2", "MAX_ATTEMPTS must be at least 1, got -2"),
        ("REAPER_SLACK_SECONDS", "-1", "REAPER_SLACK_SECONDS must be at least 0"),
        ("PORT", "70000", "PORT must be at most 65535, got 70000"),
        ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY must be at least 1, got 0"),
        ("MAX_ROWS_PER_RUN", "1_0", "MAX_ROWS_PER_RUN must be an integer"),
        ("MAX_ROWS_PER_RUN", "\u0665", "MAX_ROWS_PER_RUN must be an integer"),
    ],
)
def test_numeric_settings_out_of_range_stop_the_start(
    monkeypatch, tmp_path, name, value, message
):
    monkeypatch.setenv(name, value)
    with pytest.raises(RuntimeError, match=message):
        create_app({"INSTANCE_PATH": str(tmp_path)})


def test_settings_given_by_the_caller_obey_the_same_bounds(tmp_path):
    with pytest.raises(RuntimeError, match="MAX_ACTIVE_RUNS_PER_TASK must be at least"):
        create_app({"INSTANCE_PATH": str(tmp_path), "MAX_ACTIVE_RUNS_PER_TASK": 0})


def test_env_example_lists_every_setting_with_its_default():
    shipped = (PROJECT_ROOT / ".env.example").read_text()
    assert shipped == config.env_example(), (
        ".env.example differs from the settings table: run `make env-example`"
    )


def test_every_setting_has_a_default_of_its_type_within_bounds():
    for setting in config.SETTINGS:
        assert setting.kind in (int, str), setting.name
        if setting.default is not None:
            assert isinstance(setting.default, setting.kind), setting.name
            setting.check(setting.default)
    assert len(set(config.ENVIRONMENT_NAMES)) == len(config.SETTINGS)


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    with pytest.raises(RuntimeError, match="SECRET_KEY is required"):
        create_app({"APP_ENV": "production", "INSTANCE_PATH": str(tmp_path)})
    app = create_app(
        {
            "APP_ENV": "production",
            "SECRET_KEY": "s" * 32,
            "ALLOWED_HOSTS": "app.example.com",
            "INSTANCE_PATH": str(tmp_path),
        }
    )
    assert app.config["SECRET_KEY"] == "s" * 32


def test_development_keeps_one_random_key_per_checkout(tmp_path):
    # Sessions survive a restart of `make run`: the key is made once, kept under
    # instance/ for its owner alone, and another checkout gets its own.
    one = create_app({"INSTANCE_PATH": str(tmp_path / "a")}).config["SECRET_KEY"]
    two = create_app({"INSTANCE_PATH": str(tmp_path / "a")}).config["SECRET_KEY"]
    other = create_app({"INSTANCE_PATH": str(tmp_path / "b")}).config["SECRET_KEY"]
    assert one == two and len(one) >= 32 and other != one
    assert (tmp_path / "a" / "secret_key").stat().st_mode & 0o777 == 0o600


def test_commands_read_the_running_launchers_redis_url(tmp_path, monkeypatch):
    localstack.write_launcher_file(tmp_path, "redis://127.0.0.1:1234/0")
    app = create_app({"INSTANCE_PATH": str(tmp_path)})
    assert app.config["REDIS_URL"] == "redis://127.0.0.1:1234/0"
    assert (tmp_path / "devstack.env").stat().st_mode & 0o777 == 0o600
    # What the environment says wins; production never reads the file.
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:5678/0")
    app = create_app({"INSTANCE_PATH": str(tmp_path)})
    assert app.config["REDIS_URL"] == "redis://127.0.0.1:5678/0"
    monkeypatch.delenv("REDIS_URL")
    production = {"APP_ENV": "production", "SECRET_KEY": "s" * 32}
    app = create_app(
        {"INSTANCE_PATH": str(tmp_path), "ALLOWED_HOSTS": "x.example", **production}
    )
    assert app.config["REDIS_URL"] == "redis://127.0.0.1:6379/0"


def test_database_urls_are_normalised():
    assert database_url("postgres://a@b/c") == "postgresql+psycopg://a@b/c"
    assert database_url("postgresql://a@b/c") == "postgresql+psycopg://a@b/c"
    assert database_url("sqlite:///x.db") == "sqlite:///x.db"


def test_celery_settings_come_from_celeryconfig(app):
    conf = app.extensions["celery"].conf
    assert conf.accept_content == ["json"] and conf.task_acks_late
    assert conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    # The schedules users edit are rows (myapp.schedules); only maintenance is here.
    assert all(e["task"].startswith("myapp.") for e in conf.beat_schedule.values())
