"""Results: one row per figure, a ratio to a baseline from the same run, one table."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata

# How each unit prints.
_FORMATS = {
    "req/s": "{:,.0f} req/s",
    "runs/s": "{:,.1f} runs/s",
    "ops/s": "{:,.0f} ops/s",
    "ms": "{:,.2f} ms",
    "s": "{:,.3f} s",
    "MiB": "{:,.1f} MiB",
}


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return _FORMATS.get(unit, "{:,.3g} " + unit).format(value)


@dataclass
class Result:
    """One figure: ours against the baseline measured in the same run.

    `goal_op` is ">=" or "<=" on the ratio ours/baseline, or None for a figure
    shown for context only. `also` is a second condition that must hold too,
    e.g. an absolute p95 bound: (text, held).
    """

    measure: str
    ours: float | None
    baseline: float | None
    unit: str
    goal_op: str | None = None
    goal: float | None = None
    note: str = ""
    also: tuple[str, bool] | None = None
    error: str | None = None

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.baseline:
            return None
        return self.ours / self.baseline

    @property
    def goal_text(self) -> str:
        parts = []
        if self.goal_op is not None:
            parts.append(f"{'≥' if self.goal_op == '>=' else '≤'} {self.goal:g}")
        if self.also is not None:
            parts.append(self.also[0])
        return ", ".join(parts) or "context"

    @property
    def verdict(self) -> str:
        if self.error is not None:
            return "error"
        if self.ours is None:
            return "not measured"
        if self.goal_op is None and self.also is None:
            return "—"
        ok = True
        if self.goal_op is not None:
            ratio = self.ratio
            if ratio is None:
                return "not measured"
            ok = ratio >= self.goal if self.goal_op == ">=" else ratio <= self.goal
        if self.also is not None:
            ok = ok and self.also[1]
        return "pass" if ok else "FAIL"


def table(results: list[Result]) -> str:
    """The Markdown table (also what the terminal prints)."""
    lines = [
        "| measure | ours | baseline | ratio | goal | result |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in results:
        ratio = "—" if r.ratio is None else f"{r.ratio:.2f}"
        lines.append(
            f"| {r.measure} | {fmt(r.ours, r.unit)} | {fmt(r.baseline, r.unit)} "
            f"| {ratio} | {r.goal_text} | {r.verdict} |"
        )
    return "\n".join(lines)


def notes(results: list[Result]) -> str:
    lines = []
    for r in results:
        text = r.error or r.note
        if text:
            lines.append(f"- **{r.measure}**: {text}")
    return "\n".join(lines)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _tool_version(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return "not installed"
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0][:80] if text else "unknown"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(redis_binary: str) -> list[str]:
    """Machine, versions and date: what a reader needs to compare two RESULTS.md."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    packages = ", ".join(
        f"{p} {_version(p)}"
        for p in (
            "flask",
            "werkzeug",
            "dash",
            "celery",
            "kombu",
            "redis",
            "sqlalchemy",
            "gunicorn",
            "selenium",
        )
    )
    return [
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} cores ({_cpu_model()}), "
        f"{platform.system()} {platform.release()}, load average at start {load}",
        f"- Python {sys.version.split()[0]}; {packages}",
        f"- redis-server: {_tool_version([redis_binary, '--version'])}",
        f"- wrk: {_tool_version(['wrk', '--version'])}; "
        f"chromium: {_tool_version(['chromium', '--version'])}",
    ]
