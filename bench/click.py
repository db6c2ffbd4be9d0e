"""Click-to-result: headless Chromium clicks run on /dash/ (a 0-second run) and waits
for `app-status` to show success, in each Dash mode, against the original demo's 1 s
polling interval (a constant: that demo cannot show a result sooner than its next
poll, so 1 s is its latency bound).

The browser driving lives in bench/dash_ui.py, owned by the Dash pages.
"""

from __future__ import annotations

import shutil
import statistics

from bench.report import Result
from bench.stack import Stack

NAME = "click"
DEMO_POLL_SECONDS = 1.0
MODES = ("background", "queued")


def run(stack: Stack, quick: bool) -> list[Result]:
    try:
        from bench.dash_ui import chromium, click_to_result, sign_in
    except ImportError:
        return [_missing(mode, "Dash pages not merged yet") for mode in MODES]
    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        return [
            _missing(mode, "chromium and chromedriver are not installed")
            for mode in MODES
        ]
    samples = 3 if quick else 10
    results = []
    stack.reset()
    user = stack.user()
    with stack.web("ours") as web, stack.worker("ours"), chromium() as driver:
        sign_in(driver, web.url, user.name, user.password)
        for mode in MODES:
            click_to_result(web.url, mode, driver)  # warm-up: browser, Dash bundles
            times = [click_to_result(web.url, mode, driver) for _ in range(samples)]
            results.append(
                Result(
                    f"click-to-result, Dash {mode}",
                    statistics.median(times),
                    DEMO_POLL_SECONDS,
                    "s",
                    "<=",
                    0.3,
                    f"median of {samples} clicks after a warm-up; all: "
                    + ", ".join(f"{t:.2f}" for t in times)
                    + " s; baseline: the original demo's 1 s poll interval.",
                )
            )
    return results


def _missing(mode: str, why: str) -> Result:
    return Result(
        f"click-to-result, Dash {mode}",
        None,
        DEMO_POLL_SECONDS,
        "s",
        "<=",
        0.3,
        f"not measured: {why}",
    )
