"""`make run` on an empty database: it creates `admin`, prints how to sign in with
the other start-up lines, and that password works; a second start creates nobody."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import requests
from conftest import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
SIGN_IN = re.compile(r"sign in at (\S+) as 'admin', password (\S+)")


class Launcher:
    """`python -m myapp.devserver` (what `make run` runs), its output collected."""

    def __init__(self, env: dict[str, str]):
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "myapp.devserver"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def test_first_start_creates_admin_and_prints_the_sign_in(redis_server, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": "sqlite:///" + str(tmp_path / "dev.sqlite"),
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "WORKER_CONCURRENCY": "1",
    }
    launcher = Launcher(env)
    try:
        found = wait_for(lambda: SIGN_IN.search(launcher.output()), timeout=120)
        url, password = found.group(1), found.group(2)
        assert url == f"http://127.0.0.1:{port}/login"
        assert "myapp is starting at" in launcher.output()

        session = requests.Session()
        wait_for(lambda: answers(session, url), timeout=120, interval=0.5)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', session.get(url).text)
        response = session.post(
            url,
            data={"username": "admin", "password": password, "csrf_token": csrf[1]},
            allow_redirects=False,
            timeout=10,
        )
        assert response.status_code == 303, response.text
        assert "admin (admin)" in session.get(url.removesuffix("login")).text
    finally:
        launcher.stop()
    # The password is shown once: the next start creates nobody and says how to
    # get back in.
    again = Launcher(env)
    try:
        wait_for(lambda: "Lost the password?" in again.output(), timeout=120)
        assert "password " not in again.output().split("Lost the password?")[0]
        # Stopped once everything runs: honcho stopped mid-start can orphan a child.
        wait_for(lambda: answers(requests.Session(), url), timeout=120, interval=0.5)
    finally:
        again.stop()


def answers(session: requests.Session, url: str) -> bool:
    try:
        return session.get(url, timeout=2).status_code == 200
    except (requests.ConnectionError, requests.Timeout):
        return False
