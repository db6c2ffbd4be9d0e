"""The web process's gunicorn worker: the app's threads only ever see whole requests.

gunicorn's threaded worker (gthread) hands a connection to a thread as soon as it is
accepted, and the thread then waits for the request on a blocking socket with no time
limit. A client that sends a head and one byte of a 1,000-byte body holds its thread
until it hangs up: ten such clients hold every thread of the default web process
(2 processes x 4 threads) and the site stops answering, /healthz included.
gunicorn's documentation asks for a buffering proxy in front of it; `BufferingWorker`
is that proxy inside gunicorn, so `make run` and every platform get it:

- It reads each request in the worker's event loop (non-blocking, no thread) until
  the head (at most HEAD_LIMIT bytes) and the whole body its Content-Length or chunked
  framing announces (at most the app's MAX_CONTENT_LENGTH) have arrived, then hands
  the connection to a thread exactly as gthread would.
- A request that is not whole `read_timeout` seconds after its connection was
  accepted (a kept-alive connection: after its first byte) gets 408 and is closed;
  a connection that sent nothing is closed without an answer.
- A body over the limit gets 413 as soon as that is known (at once from a
  Content-Length, as the chunks arrive when chunked); a head over HEAD_LIMIT gets 431.
  These refusals use the app's JSON error shape and write one log line each.
- Whatever the buffer cannot judge (bad framing, a bare LF, two Content-Lengths) goes
  to a thread at once, where gunicorn's strict parser refuses it with its own 400.
- A thread never waits longer than `read_timeout` for a client to make progress:
  the socket gets kernel send and receive timeouts, so a client that stops reading
  its response is dropped (one log line). Responses are not buffered: a client that
  keeps reading, however slowly, keeps its thread until its response is out.
- A connection the app is done with is half-closed and drained here, in the loop,
  not by gthread, whose close waits up to 2 s on the client with the loop stopped.

A slow client costs a file descriptor and at most HEAD_LIMIT plus its body limit
(chunked framing counted up to CHUNKED_OVERHEAD times the limit) of memory, never a
thread. gunicorn keeps at most `worker_connections` (1000) connections per worker
process and stops accepting beyond that; that is the bound on concurrent slow clients.

Not buffered (plain gthread, with a warning at start): gunicorn's own TLS, HTTP/2,
the PROXY protocol and uWSGI. Terminate TLS at the platform or a proxy.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import struct
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from gunicorn import http
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn, ThreadWorker

from myapp.web.framing import HEAD_LIMIT, RequestBuffer, Verdict

__all__ = ["HEAD_LIMIT", "BufferingWorker", "RequestBuffer", "Verdict", "refusal"]

# Used when the app declares no MAX_CONTENT_LENGTH (nginx's client_max_body_size).
DEFAULT_BODY_LIMIT = 1024 * 1024
# After a refusal the connection is half-closed and what the client still sends is
# read and dropped for this long, so the answer is not lost to a TCP reset.
LINGER_SECONDS = 2.0
_LINGER_BYTES = 256 * 1024
_RECV_SIZE = 64 * 1024


@dataclass
class _Reading:
    """A connection in the event loop: its request arriving, or, after a refusal,
    the rest of what it sends being read and dropped (`lingering`)."""

    conn: TConn
    buffer: RequestBuffer
    deadline: float
    lingering: bool = False
    dropped: int = 0
    sent_continue: bool = False
    watched: bool = False


# What the worker answers itself: status, reason phrase, error code and message
# (with the limit in it); the body is the app's JSON error shape.
_REFUSALS: dict[str, tuple[int, str, str, str]] = {
    "timeout": (
        408,
        "Request Timeout",
        "request_timeout",
        "the request did not arrive within {limit:g} seconds",
    ),
    Verdict.TOO_LARGE.value: (
        413,
        "Request Entity Too Large",
        "request_entity_too_large",
        "the request body is larger than {limit} bytes",
    ),
    Verdict.HEAD_TOO_LARGE.value: (
        431,
        "Request Header Fields Too Large",
        "request_header_fields_too_large",
        "the request line and headers are larger than {limit} bytes",
    ),
}


def refusal(key: str, limit: float) -> tuple[int, str, bytes]:
    """Status, message and the whole HTTP response for a request the worker
    refuses itself."""
    status, phrase, code, template = _REFUSALS[key]
    message = template.format(limit=limit)
    body = json.dumps({"error": {"code": code, "message": message, "fields": {}}})
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return status, message, (head + body).encode()


class BufferingWorker(ThreadWorker):
    """gthread, with requests buffered in the event loop (see the module docstring)."""

    read_timeout: float = 20.0

    @classmethod
    def with_read_timeout(cls, seconds: float) -> type[BufferingWorker]:
        """This worker class with another read timeout (for gunicorn.conf.py)."""
        return type(cls.__name__, (cls,), {"read_timeout": float(seconds)})

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._reading: dict[TConn, _Reading] = {}
        self._stopping_since: float | None = None
        self.body_limit = DEFAULT_BODY_LIMIT
        self.buffering = True

    def run(self) -> None:
        # The app is loaded by now: its body limit is declared once, in its config.
        config = getattr(self.wsgi, "config", None) or {}
        self.body_limit = config.get("MAX_CONTENT_LENGTH") or DEFAULT_BODY_LIMIT
        cfg = self.cfg
        self.buffering = not (
            cfg.is_ssl
            or cfg.http2_cleartext != "off"
            or "h2" in cfg.http_protocols
            or cfg.proxy_protocol != "off"
            or getattr(cfg, "protocol", "http") != "http"
        )
        if not self.buffering:
            self.log.warning(
                "requests are not buffered with TLS, HTTP/2, the PROXY protocol or "
                "uwsgi: slow clients can hold this worker's threads"
            )
        super().run()

    # -- in the event loop -----------------------------------------------------

    def enqueue_req(self, conn: TConn) -> None:
        """Every connection with a request to come passes here (new, kept alive,
        pipelined): its request is buffered before a thread sees it."""
        if not self.buffering:
            super().enqueue_req(conn)
            return
        reading = _Reading(
            conn,
            RequestBuffer(self.body_limit),
            deadline=time.monotonic() + self.read_timeout,
        )
        self._reading[conn] = reading
        conn.sock.setblocking(False)
        # What the previous request's parser read ahead: a pipelined request.
        ahead = conn.parser.unreader.take_buffered() if conn.parser else b""
        if ahead and self._feed(reading, ahead):
            return
        self._on_readable(reading, conn.sock)

    def _on_readable(self, reading: _Reading, sock: socket.socket) -> None:
        try:
            data = sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            self._watch(reading)
            return
        except OSError:
            data = b""
        if not data:  # the client hung up
            self._close(reading)
        elif reading.lingering:
            reading.dropped += len(data)
            if reading.dropped > _LINGER_BYTES:
                self._close(reading)
        elif not self._feed(reading, data):
            self._watch(reading)

    def _feed(self, reading: _Reading, data: bytes) -> bool:
        """Add bytes; True once the connection has left the buffering stage."""
        verdict = reading.buffer.feed(data)
        if verdict is Verdict.INCOMPLETE:
            if reading.buffer.expects_continue and not reading.sent_continue:
                # The client waits for this before it sends the body.
                reading.sent_continue = True
                self._send(reading, b"HTTP/1.1 100 Continue\r\n\r\n")
            return False
        if verdict is Verdict.READY:
            self._hand_over(reading)
        else:
            self._refuse(reading, verdict.value)
        return True

    def _hand_over(self, reading: _Reading) -> None:
        """The request is whole: a thread takes it, as in gthread."""
        self._unwatch(reading)
        del self._reading[reading.conn]
        conn = reading.conn
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.unread(bytes(reading.buffer.data))
        # gthread's thread would otherwise wait for bytes that are already here.
        conn.data_ready = True
        if not getattr(conn, "timeouts_set", False):
            # Kernel timeouts outlive the thread's setblocking(True): the thread
            # never waits longer than read_timeout on this client, either way.
            timeval = struct.pack("ll", max(1, int(self.read_timeout)), 0)
            for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
                conn.sock.setsockopt(socket.SOL_SOCKET, option, timeval)
            conn.timeouts_set = True
        super().enqueue_req(conn)

    def _refuse(self, reading: _Reading, key: str) -> None:
        """Answer from here, half-close, and read what still comes for a moment
        so the answer is not lost to a TCP reset."""
        limit = {
            "timeout": self.read_timeout,
            Verdict.TOO_LARGE.value: self.body_limit,
            Verdict.HEAD_TOO_LARGE.value: HEAD_LIMIT,
        }[key]
        status, message, response = refusal(key, limit)
        self.log.info(
            "refused a request from %s with %d: %s (%d bytes received)",
            _peer(reading.conn),
            status,
            message,
            len(reading.buffer.data),
        )
        self._send(reading, response)
        self._linger(reading)

    def _linger(self, reading: _Reading) -> None:
        """Half-close, then read and drop what the client still sends for a
        moment, so the last answer is not lost to a TCP reset; the loop moves on
        meanwhile."""
        try:
            reading.conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(reading)
            return
        reading.lingering = True
        reading.buffer = RequestBuffer(0)  # the request's bytes are not needed now
        reading.deadline = time.monotonic() + LINGER_SECONDS
        self._watch(reading)

    def finish_request(self, conn: TConn, fs: Any) -> None:
        """A thread is done with the connection. Kept alive: gthread's poller
        takes it back. Closed: it lingers here, not in gthread's close, which
        waits on the client for up to 2 s with the event loop stopped."""
        try:
            keep = fs.result() if not fs.cancelled() else False
        except Exception:
            keep = False
        if keep or not self.buffering:
            super().finish_request(conn, fs)
            return
        reading = _Reading(conn, RequestBuffer(0), deadline=0.0)
        self._reading[conn] = reading
        conn.sock.setblocking(False)
        self._linger(reading)

    def _send(self, reading: _Reading, data: bytes) -> None:
        # A few hundred bytes fit an empty socket buffer; a client whose buffer is
        # full was not reading anyway and gets what fits.
        with contextlib.suppress(OSError):
            reading.conn.sock.send(data)

    def _watch(self, reading: _Reading) -> None:
        if not reading.watched:
            reading.watched = True
            self.poller.register(
                reading.conn.sock,
                selectors.EVENT_READ,
                partial(self._on_readable, reading),
            )

    def _unwatch(self, reading: _Reading) -> None:
        if reading.watched:
            reading.watched = False
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(reading.conn.sock)

    def _close(self, reading: _Reading) -> None:
        self._unwatch(reading)
        del self._reading[reading.conn]
        self.nr_conns -= 1
        reading.conn.close()

    def murder_keepalived(self, force: bool = False) -> None:
        """gthread calls this every turn of its loop (at least once a second):
        besides its kept-alive connections, expire requests that are late."""
        super().murder_keepalived(force)
        now = time.monotonic()
        if not self.alive and self._stopping_since is None:
            self._stopping_since = now
        # Stopping (max_requests, a reload): a connection accepted just before may
        # not have sent its request yet. It gets the moment gthread gives kept-alive
        # connections, then is closed if still silent; closing it at once dropped
        # requests at every recycle.
        quiet_too_long = (
            self._stopping_since is not None
            and now - self._stopping_since >= STOP_KEEPALIVE_LINGER
        )
        for reading in list(self._reading.values()):
            said_nothing = not reading.buffer.started and not reading.lingering
            if force or (said_nothing and quiet_too_long):
                self._close(reading)  # stopping: nothing was asked yet
            elif now < reading.deadline:
                continue
            elif reading.lingering or said_nothing:
                self._close(reading)
            else:
                self._refuse(reading, "timeout")

    # -- in a thread -----------------------------------------------------------

    def handle_request(self, req: Any, conn: TConn) -> bool:
        try:
            return super().handle_request(req, conn)
        except BlockingIOError:
            # The kernel send timeout set in _hand_over: the client stopped
            # reading its response. One line, not gthread's traceback.
            self.log.info(
                "closed the connection of %s: it read nothing of its response for %g s",
                _peer(conn),
                self.read_timeout,
            )
            return False


def _peer(conn: TConn) -> str:
    client = conn.client
    if isinstance(client, tuple) and client:
        return str(client[0])
    return str(client or "unknown")
