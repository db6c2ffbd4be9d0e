"""The raw Redis ceiling on this machine, for context: redis-benchmark against the
bench's own redis-server (127.0.0.1, bounded request count)."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess

from bench.report import Result
from bench.stack import Stack

NAME = "redis"
TESTS = ("PING_INLINE", "SET", "GET", "LPUSH")


def run(stack: Stack, quick: bool) -> list[Result]:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return [
            Result(
                "raw Redis ceiling",
                None,
                None,
                "ops/s",
                note="not measured: redis-benchmark is not installed "
                "(apt-get install redis-tools; `make bench` does it)",
            )
        ]
    out = subprocess.run(
        [
            binary,
            "-h",
            "127.0.0.1",
            "-p",
            str(stack.redis_port),
            "--dbnum",
            "15",
            "-n",
            "20000" if quick else "100000",
            "-c",
            "8",
            "-t",
            "ping,set,get,lpush",
            "--csv",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    stack.redis(15).flushdb()
    rows = list(csv.DictReader(io.StringIO(out)))
    rates = {row["test"]: float(row["rps"]) for row in rows}
    return [
        Result(
            f"raw Redis {name} (redis-benchmark, 8 clients)",
            rates[name],
            None,
            "ops/s",
            note="context: the ceiling of any request that touches Redis once."
            if name == "PING_INLINE"
            else "",
        )
        for name in TESTS
        if name in rates
    ]
