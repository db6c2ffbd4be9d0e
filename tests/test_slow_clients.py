"""Slow and careless clients against the real web process: the Procfile's `web` line
(gunicorn with the shipped gunicorn.conf.py) on real sockets.

Ten connections that send a head and one byte of a 1,000-byte body must not stop
/healthz or a run start from answering; a request that never becomes whole gets 408;
a chunked body past MAX_CONTENT_LENGTH gets 413, never a truncated parse; a client
that stops reading its response loses its connection, not a thread. Every refusal is
one log line, never a traceback.

The framing rules of the worker's request buffer are checked first, without sockets.
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
from collections.abc import Iterator
from contextlib import closing

import pytest
import requests

from myapp import create_app, users
from myapp.extensions import db
from myapp.web.server import HEAD_LIMIT, RequestBuffer, Verdict
from tests.support import Web, clean_environ, wait_for

LIMIT = 64 * 1024  # MAX_CONTENT_LENGTH, the shipped default
START = b"POST /api/tasks/summarize_data/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
JSON = b"Content-Type: application/json\r\n"


def chunked(body: bytes, size: int = 8192) -> bytes:
    pieces = (body[i : i + size] for i in range(0, len(body), size))
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


# -- the request buffer: where a request ends, fed whole or a byte at a time ---------

WHOLE_REQUESTS = {
    "no body": b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
    "an empty line first": b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "length": START + JSON + b"Content-Length: 2\r\n\r\n{}",
    "length, pipelined": START + b"Content-Length: 2\r\n\r\n{}GET / HTTP/1.1\r\n",
    "chunked": START + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b"{}" * 10, 3),
    "chunked with extension and trailer": START
    + b"Transfer-Encoding: chunked\r\n\r\n2;x=y\r\n{}\r\n0\r\nT: v\r\n\r\n",
    "body at the limit": START
    + b"Transfer-Encoding: chunked\r\n\r\n"
    + chunked(b" " * LIMIT),
    # Framing gunicorn refuses at once with its own 400: handed over, never waited on.
    "bare LF": b"GET / HTTP/1.1\nHost: a\n\n",
    "two lengths": START + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n",
    "length and chunked": START
    + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    "bad chunk size": START + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    "unknown coding": START + b"Transfer-Encoding: gzip\r\n\r\n",
}
REFUSED_REQUESTS = {
    "length over the limit": (
        START + b"Content-Length: %d\r\n\r\n" % (LIMIT + 1),
        Verdict.TOO_LARGE,
    ),
    "chunked over the limit": (
        START + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b" " * (LIMIT + 1)),
        Verdict.TOO_LARGE,
    ),
    "head over the limit": (
        b"GET / HTTP/1.1\r\nX-Big: " + b"a" * HEAD_LIMIT + b"\r\n\r\n",
        Verdict.HEAD_TOO_LARGE,
    ),
}


def verdicts(data: bytes, step: int) -> list[Verdict]:
    buffer = RequestBuffer(LIMIT)
    return [buffer.feed(data[i : i + step]) for i in range(0, len(data), step)]


@pytest.mark.parametrize("name", WHOLE_REQUESTS)
def test_a_whole_request_is_ready_at_its_last_byte_however_it_arrives(name):
    data = WHOLE_REQUESTS[name]
    assert verdicts(data, len(data)) == [Verdict.READY]
    # A byte at a time: incomplete until the end (or until gunicorn can judge it).
    trickled = verdicts(data, 1)
    assert Verdict.READY in trickled
    assert set(trickled[: trickled.index(Verdict.READY)]) <= {Verdict.INCOMPLETE}


@pytest.mark.parametrize("name", REFUSED_REQUESTS)
def test_an_oversized_request_is_refused_before_it_is_all_read(name):
    data, verdict = REFUSED_REQUESTS[name]
    for step in (len(data), 1000):
        found = [v for v in verdicts(data, step) if v is not Verdict.INCOMPLETE]
        assert found[0] is verdict


def test_a_partial_request_stays_incomplete():
    for data in (
        START + b"Content-Length: 1000\r\n\r\n{",
        START + b"Transfer-Encoding: chunked\r\n\r\n5\r\n{}",
        START + b"Transfer-Encoding: chunked\r\n\r\n0\r\nTrailer: x\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n",
    ):
        assert verdicts(data, len(data)) == [Verdict.INCOMPLETE]
        assert set(verdicts(data, 1)) == {Verdict.INCOMPLETE}


# -- through gunicorn ---------------------------------------------------------------


def connect(web: Web, **options: int) -> socket.socket:
    """A client socket to `web`; `options` are SO_* socket options (SO_RCVBUF=...)."""
    sock = socket.socket()
    for option, value in options.items():
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, option), value)
    sock.connect(("127.0.0.1", web.port))
    sock.settimeout(30)
    return sock


def exchange(web: Web, data: bytes) -> bytes:
    """Send `data`, return everything the server sends until it closes."""
    with closing(connect(web)) as sock:
        sock.sendall(data)
        return read_until_closed(sock)


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def status_and_json(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


@pytest.fixture(scope="module")
def web_env(redis_server, database_url, tmp_path_factory) -> dict[str, str]:
    """Production settings on the test's Redis and database, the shipped gunicorn
    sizes (2 processes x 4 threads) and no start limit."""
    return clean_environ(
        APP_ENV="production",
        SECRET_KEY="slow-clients-test-secret",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        REDIS_URL=redis_server.url,
        DATABASE_URL=database_url,
        INSTANCE_PATH=str(tmp_path_factory.mktemp("instance")),
        START_RATE_LIMIT="off",
    )


@pytest.fixture(scope="module")
def token(web_env) -> str:
    """An admin's API token in the test database: starts need a user."""
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": web_env["DATABASE_URL"],
            "REDIS_URL": web_env["REDIS_URL"],
            "INSTANCE_PATH": web_env["INSTANCE_PATH"],
        }
    )
    with app.app_context():
        if users.get_user("slow-clients") is None:
            users.create_user("slow-clients", "admin", None)
        made = users.issue_token("slow-clients", "tests")
        db.engine.dispose()
    return made


def bearer(token: str) -> bytes:
    return b"Authorization: Bearer %s\r\n" % token.encode()


@pytest.fixture(scope="module")
def web(web_env, tmp_path_factory) -> Iterator[Web]:
    """The web process exactly as shipped (the 20 s read timeout included)."""
    server = Web("web", web_env, tmp_path_factory.mktemp("web") / "web.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def impatient_web(web_env, tmp_path_factory) -> Iterator[Web]:
    """One process of 4 threads with a 2 s read timeout: lateness shows quickly."""
    env = {**web_env, "WEB_CONCURRENCY": "1", "WEB_READ_TIMEOUT": "2"}
    log = tmp_path_factory.mktemp("impatient-web") / "web.log"
    server = Web("impatient-web", env, log)
    yield server
    server.stop()


def test_ten_slow_bodies_do_not_stop_the_site(web, token):
    slow = []
    for _ in range(10):
        sock = connect(web)
        sock.sendall(START + JSON + b"Content-Length: 1000\r\n\r\n{")
        slow.append(sock)
    try:
        # More slow clients than the web process has threads (2 x 4), all still
        # sending: the site answers anyway, well inside the 20 s read timeout.
        health = requests.get(web.url + "/healthz", timeout=10)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        start = requests.post(
            web.url + "/api/tasks/summarize_data/runs",
            json={},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert start.status_code == 202, start.text
        for sock in slow:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)  # still open, still waiting for its request to end
    finally:
        for sock in slow:
            sock.close()


def test_a_chunked_body_past_the_limit_gets_413(web):
    body = b'{"category": null' + b" " * (80 * 1024) + b"}"
    response = exchange(
        web, START + JSON + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body)
    )
    status, error = status_and_json(response)
    assert status == 413
    assert error["error"]["code"] == "request_entity_too_large"
    assert error["error"]["message"] == f"the request body is larger than {LIMIT} bytes"
    # The same body with a Content-Length: the same answer.
    response = exchange(web, START + JSON + b"Content-Length: %d\r\n\r\n" % len(body))
    assert status_and_json(response)[0] == 413


def test_a_chunked_body_within_the_limit_starts_a_run(web, token):
    body = b'{"category": null' + b" " * (60 * 1024) + b"}"
    response = exchange(
        web,
        START
        + bearer(token)
        + JSON
        + b"Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(body, 1000),
    )
    status, run = status_and_json(response)
    assert status == 202 and run["task"] == "summarize_data"


def test_a_head_past_the_limit_gets_431(web):
    response = exchange(
        web,
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
        + b"a" * HEAD_LIMIT
        + b"\r\n\r\n",
    )
    status, error = status_and_json(response)
    assert status == 431
    assert error["error"]["code"] == "request_header_fields_too_large"


def test_kept_alive_and_pipelined_requests_are_all_answered(web, token):
    twice = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    last = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    assert exchange(web, twice * 2 + last).count(b"HTTP/1.1 200 OK") == 3
    with requests.Session() as session:
        for _ in range(3):
            assert session.get(web.url + "/healthz", timeout=10).status_code == 200
        started = session.post(
            web.url + "/api/tasks/summarize_data/runs",
            json={},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert started.status_code == 202


def test_expect_100_continue_is_answered_before_the_body(web, token):
    with closing(connect(web)) as sock:
        sock.sendall(
            START
            + bearer(token)
            + JSON
            + b"Connection: close\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"{}")
        assert b"HTTP/1.1 202 " in read_until_closed(sock)


def test_a_request_that_never_ends_gets_408_and_one_log_line(impatient_web):
    web = impatient_web
    refusal = "refused a request from 127.0.0.1 with 408"
    before = web.log().count(refusal)
    with closing(connect(web)) as sock:
        sock.sendall(START + JSON + b"Content-Length: 1000\r\n\r\n{")
        status, error = status_and_json(read_until_closed(sock))
    assert status == 408
    assert error == {
        "error": {
            "code": "request_timeout",
            "message": "the request did not arrive within 2 seconds",
            "fields": {},
        }
    }
    # A head trickled a byte at a time never becomes whole either.
    with closing(connect(web)) as sock:
        for byte in b"GET /healthz HTTP/1.1\r\n":
            sock.send(bytes([byte]))
        assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
    # A connection that says nothing is closed without a word.
    with closing(connect(web)) as sock:
        assert read_until_closed(sock) == b""
    assert web.log().count(refusal) - before == 2
    assert "Traceback" not in web.log()


def test_a_client_that_stops_reading_loses_its_connection_not_a_thread(
    impatient_web,
):
    web = impatient_web
    # Dash's Plotly bundle (~4.8 MB) asked for three times on one connection whose
    # receive window is tiny: far more than the socket buffers hold, so the
    # thread writing it would wait for as long as the client does not read.
    bundle = b"GET /dash/_dash-component-suites/plotly/package_data/plotly.min.js"
    request = bundle + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    stalled = []
    for _ in range(4):  # as many as the process has threads
        sock = connect(web, SO_RCVBUF=4096)
        sock.sendall(request * 3)
        stalled.append(sock)
    try:
        wait_for(
            lambda: web.log().count("it read nothing of its response") >= 4,
            timeout=60,
            interval=0.5,
        )
        assert requests.get(web.url + "/healthz", timeout=10).status_code == 200
    finally:
        for sock in stalled:
            sock.close()
    assert "Traceback" not in web.log()


@pytest.fixture(scope="module")
def recycling_web(web_env, tmp_path_factory) -> Iterator[Web]:
    """One process replaced every 25 requests: recycles happen under load."""
    env = {
        **web_env,
        "WEB_CONCURRENCY": "1",
        "GUNICORN_CMD_ARGS": "--max-requests 25 --max-requests-jitter 0",
    }
    log = tmp_path_factory.mktemp("recycling-web") / "web.log"
    server = Web("recycling-web", env, log)
    yield server
    server.stop()


def test_no_request_is_dropped_when_a_worker_is_replaced(recycling_web):
    # A client connects just as its worker reaches max_requests: the worker must
    # still answer what that connection sends (with Connection: close), not close
    # it unanswered. New connections each time, as most clients make them.
    def fetch(_: int) -> str:
        try:
            with requests.get(recycling_web.url + "/healthz", timeout=30) as answer:
                return str(answer.status_code)
        except requests.ConnectionError as exc:
            return type(exc).__name__

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(fetch, range(400)))
    assert outcomes.count("200") == len(outcomes), {
        o: outcomes.count(o) for o in set(outcomes)
    }
    assert recycling_web.log().count("Autorestarting worker") >= 10
