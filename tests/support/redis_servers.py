"""Redis servers on free ports of 127.0.0.1: a server as `make run` starts it, and
Sentinels watching one."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import redis

from myapp.devserver import start_redis
from tests.support.basics import free_port, wait_for


class RedisServer:
    """A redis-server on a free port, as `make run` starts it (append-only,
    noeviction, 127.0.0.1); it can be stopped and started again with its data.
    `popen` goes to subprocess.Popen (e.g. start_new_session=True)."""

    def __init__(self, workdir: Path, port: int | None = None, **popen: Any):
        self.workdir = workdir
        self.port = port or free_port()
        self.popen = popen
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return self.db_url(0)

    def db_url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis.from_url(self.db_url(db), decode_responses=True)

    def start(self) -> RedisServer:
        self.process, _ = start_redis(self.workdir, port=self.port, **self.popen)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(20)
            self.process = None

    def kill(self) -> None:
        """SIGKILL: the server dies with whatever it has not written or replicated."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(20)
            self.process = None

    def replicate(self, primary: RedisServer, timeout: float = 30) -> RedisServer:
        """Make this server a replica of `primary`; return once it is in sync."""
        client = self.client()
        client.replicaof("127.0.0.1", primary.port)
        wait_for(
            lambda: client.info("replication").get("master_link_status") == "up",
            timeout,
            what=f"replica {self.port} in sync",
        )
        return self


class SentinelServer:
    """A Redis Sentinel (`redis-server <conf> --sentinel`) on a free port of
    127.0.0.1, monitoring the primary at `primary_port` as `master`: it calls the
    primary down after 1 s without an answer and fails over when `quorum` sentinels
    agree."""

    def __init__(
        self,
        workdir: Path,
        primary_port: int,
        master: str = "mymaster",
        quorum: int = 2,
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.master = master
        workdir.mkdir(parents=True, exist_ok=True)
        # Sentinel rewrites its configuration file with what it learns.
        self.conf = workdir / "sentinel.conf"
        self.conf.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            f"dir {workdir}\n"
            f"logfile {workdir / 'sentinel.log'}\n"
            f"sentinel monitor {master} 127.0.0.1 {primary_port} {quorum}\n"
            f"sentinel down-after-milliseconds {master} 1000\n"
            f"sentinel failover-timeout {master} 10000\n"
            f"sentinel parallel-syncs {master} 1\n"
        )
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)

    def start(self) -> SentinelServer:
        from myapp.devserver import redis_server_binary

        self.process = subprocess.Popen(
            [redis_server_binary(), str(self.conf), "--sentinel"]
        )
        wait_for(self._answers, 15, what=f"sentinel {self.port} answering")
        return self

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            return False

    def primary_port(self) -> int | None:
        """The port of the server this sentinel calls primary now."""
        address = self.client().sentinel_get_master_addr_by_name(self.master)
        return int(address[1]) if address else None

    def knows(self, replicas: int, sentinels: int) -> bool:
        """It has found this many replicas and other sentinels of the primary."""
        state = self.client().sentinel_master(self.master)
        return (
            int(state["num-slaves"]) >= replicas
            and int(state["num-other-sentinels"]) >= sentinels
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(20)
            self.process = None
