"""`make run` on an empty database: it creates `admin`, prints how to sign in with
the other start-up lines, and that password works; a second start creates nobody."""

from __future__ import annotations

import re

import requests

from myapp.testing import Launcher, clean_environ

SIGN_IN = re.compile(r"sign in at (\S+) as 'admin', password (\S+)")


def test_first_start_creates_admin_and_prints_the_sign_in(redis_server, tmp_path):
    env = clean_environ(
        REDIS_URL=redis_server.url,
        DATABASE_URL="sqlite:///" + str(tmp_path / "dev.sqlite"),
        INSTANCE_PATH=str(tmp_path / "instance"),
        WEB_CONCURRENCY="1",
        WORKER_CONCURRENCY="1",
    )
    launcher = Launcher("make-run", env, tmp_path / "first.log")
    try:
        found = SIGN_IN.search(launcher.log())
        assert found, launcher.log_tail()
        url, password = found.group(1), found.group(2)
        assert url == f"{launcher.url}/login"
        assert "myapp is starting at" in launcher.log()

        session = requests.Session()
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', session.get(url).text)
        response = session.post(
            url,
            data={"username": "admin", "password": password, "csrf_token": csrf[1]},
            allow_redirects=False,
            timeout=10,
        )
        assert response.status_code == 303, response.text
        assert "admin (admin)" in session.get(launcher.url + "/", timeout=10).text
    finally:
        launcher.stop()
    # The password was shown once: the next start creates nobody and says how to
    # get back in.
    again = Launcher("make-run-again", {**env, "PORT": ""}, tmp_path / "again.log")
    try:
        assert "Lost the password?" in again.log() and not SIGN_IN.search(again.log())
    finally:
        again.stop()
