"""HTTP load against 127.0.0.1 only, always bounded in time (and count where asked).

`wrk` (Debian's package) when present: a C load generator does not steal the GIL
from anyone and is what people quote. Otherwise, and wherever a load must be bounded
by count, a small Python generator: threads, each on one keep-alive connection.
"""

from __future__ import annotations

import http.client
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

Request = tuple[str, str, bytes | None]  # method, path, JSON body


@dataclass
class LoadResult:
    requests: int
    seconds: float
    statuses: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # seconds, Python only
    tool: str = "python"

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        """Responses that were not 2xx (or no response at all)."""
        return sum(n for s, n in self.statuses.items() if not 200 <= s < 300)


def _local(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost"):
        raise ValueError(f"load goes to 127.0.0.1 only, not {parts.hostname}")
    return "127.0.0.1", parts.port or 80


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


_WRK_SCRIPT = """
wrk.method = "{method}"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{headers}
"""


def wrk(
    url: str,
    *,
    method: str = "GET",
    body: str | None = None,
    seconds: float,
    connections: int,
    threads: int = 1,
    headers: Mapping[str, str] | None = None,
) -> LoadResult:
    """Run wrk for a fixed duration; its own timeout bounds every request."""
    _local(url)
    lua = _WRK_SCRIPT.format(
        method=method,
        body="nil" if body is None else f"[==[{body}]==]",
        headers="\n".join(
            f'wrk.headers["{k}"] = [==[{v}]==]' for k, v in (headers or {}).items()
        ),
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=True,
        ).stdout
    finally:
        Path(script.name).unlink(missing_ok=True)
    total = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if total is None:
        raise RuntimeError("could not read wrk's output:\n" + out)
    count = int(total.group(1))
    elapsed = float(total.group(2)) / (1000 if total.group(3) == "ms" else 1)
    statuses: Counter = Counter()
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    statuses[0] = (
        sum(int(n) for n in re.findall(r"\d+", errors.group(1))) if errors else 0
    )
    statuses[500] = int(bad.group(1)) if bad else 0
    statuses[200] = count - statuses[500]
    return LoadResult(count, elapsed, statuses, tool="wrk")


def python_load(
    url: str,
    requests: Callable[[int], Request],
    *,
    count: int,
    seconds: float,
    concurrency: int,
    headers: Mapping[str, str] | None = None,
) -> LoadResult:
    """Send up to `count` requests (request i is `requests(i)`) from `concurrency`
    keep-alive connections, stopping at `seconds` whatever is left; `headers` go
    with every request."""
    host, port = _local(url)
    lock = threading.Lock()
    next_index = 0
    statuses: Counter = Counter()
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    def claim() -> int | None:
        nonlocal next_index
        with lock:
            if next_index >= count or time.monotonic() > deadline:
                return None
            next_index += 1
            return next_index - 1

    def loop() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        mine: list[float] = []
        seen: Counter = Counter()
        while (i := claim()) is not None:
            method, path, body = requests(i)
            sent = dict(headers or {})
            if body is not None:
                sent["Content-Type"] = "application/json"
            started = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=sent)
                response = conn.getresponse()
                response.read()
                seen[response.status] += 1
            except (OSError, http.client.HTTPException):
                seen[0] += 1
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=10)
            mine.append(time.perf_counter() - started)
        conn.close()
        with lock:
            statuses.update(seen)
            latencies.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    elapsed = time.perf_counter() - started
    return LoadResult(len(latencies), elapsed, statuses, latencies)


def timed_gets(url: str, path: str, count: int) -> list[float]:
    """`count` sequential GETs on one keep-alive connection; seconds each."""
    host, port = _local(url)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    times: list[float] = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            times.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"GET {path} answered {response.status}")
    finally:
        conn.close()
    return times


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), inclusive method; the median for q=50."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]
