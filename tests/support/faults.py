"""The network, for fault rehearsals: a TCP proxy per link that the test cuts,
delays, resets and heals, and hosts whose processes reach Redis and the database
through their own proxies."""

from __future__ import annotations

import contextlib
import queue
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support.environ import app_environ
from tests.support.processes import Worker

if TYPE_CHECKING:
    from flask import Flask


class FaultProxy:
    """A TCP proxy on 127.0.0.1 standing for one link of one host (to Redis, or to
    the database): the test is the network. It can `cut` the link (connections
    stay open and new ones are accepted, but no byte passes either way, as in a
    partition; what was sent meanwhile arrives after `heal`, as TCP retransmits
    it), `reset` every connection, add one-way `latency`, and `heal`.

    Every byte stays on 127.0.0.1: a partition here is this proxy not passing
    bytes, never a route, a firewall rule or a network namespace."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.latency = 0.0
        self.flowing = threading.Event()
        self.flowing.set()
        self._links: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._start(self._accept)

    @staticmethod
    def _start(target: Callable[..., None], *args: Any) -> None:
        threading.Thread(target=target, args=args, daemon=True).start()

    def cut(self) -> None:
        self.flowing.clear()

    def heal(self) -> None:
        self.latency = 0.0
        self.flowing.set()

    def delay(self, seconds: float) -> None:
        """Hold every chunk `seconds` before passing it on (each way)."""
        self.latency = seconds

    def reset(self) -> None:
        """Abort every open connection (RST to both ends); new ones pass."""
        with self._lock:
            links, self._links = self._links, []
        for sock in links:
            with contextlib.suppress(OSError):
                # Linger 0: close sends RST, as a peer that lost the connection.
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                sock.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.close()
        self.reset()
        self.flowing.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._links += [client, server]
            self._pipe(client, server)
            self._pipe(server, client)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        """One direction: a reader stamps each chunk, a sender passes it on when its
        latency is up and the link is not cut (so chunks are delayed, not queued
        behind each other's delays)."""
        chunks: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

        def read() -> None:
            while True:
                try:
                    data = source.recv(65536)
                except OSError:
                    data = b""
                chunks.put((time.monotonic(), data))
                if not data:
                    return

        def send() -> None:
            while True:
                received, data = chunks.get()
                due = received + self.latency
                while (left := due - time.monotonic()) > 0:
                    time.sleep(left)
                self.flowing.wait()
                try:
                    if not data:
                        sink.shutdown(socket.SHUT_WR)
                        return
                    sink.sendall(data)
                except OSError:
                    return

        self._start(read)
        self._start(send)


class Host:
    """A machine of the rehearsal: our processes whose Redis and database
    connections go through this host's own proxies, and its worker hostname."""

    def __init__(self, name: str, redis_port: int, database_url: str) -> None:
        from sqlalchemy.engine import make_url

        self.name = name
        self.redis = FaultProxy(redis_port)
        url = make_url(database_url)
        self.database = FaultProxy(url.port or 5432, url.host or "127.0.0.1")
        self.database_url = url.set(host="127.0.0.1", port=self.database.port)
        self.workers: list[Worker] = []

    @property
    def links(self) -> tuple[FaultProxy, FaultProxy]:
        return (self.redis, self.database)

    def environ(self, env: Mapping[str, str]) -> dict[str, str]:
        """`env` (a process's environment) with its Redis and database reached
        through this host's links."""
        redis_url = re.sub(
            r"127\.0\.0\.1:\d+", f"127.0.0.1:{self.redis.port}", env["REDIS_URL"]
        )
        moved = {**env, "REDIS_URL": redis_url, "DATA_REDIS_URL": redis_url}
        moved["DATABASE_URL"] = self.database_url.render_as_string(hide_password=False)
        return moved

    def worker(self, app: Flask, logdir: Path, concurrency: int = 1) -> Worker:
        """A worker process of this host (hostname `<name>@...`) running `app`."""
        env = self.environ(app_environ(app))
        log = logdir / f"worker-{self.name}.log"
        worker = Worker(self.name, env, log, concurrency=concurrency)
        self.workers.append(worker)
        return worker

    def cut(self) -> None:
        for link in self.links:
            link.cut()

    def heal(self) -> None:
        for link in self.links:
            link.heal()

    def delay(self, seconds: float) -> None:
        for link in self.links:
            link.delay(seconds)

    def close(self) -> None:
        for link in self.links:
            link.close()
