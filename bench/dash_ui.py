"""Browser timings of the Dash page (a benchmark, not a test).

- `click_to_result(base_url, mode)`: seconds from a click on run to `app-status`
  saying SUCCESS, for a 0-second one-row run, in `background` or `queued` mode.
- `grid_first_rows(base_url)`: seconds from navigation to the first data-grid row.

Both take a browser already signed in (`sign_in`). Run alone against a running
stack (`make run`), signing in with the password it printed:

    python -m bench.dash_ui --url http://127.0.0.1:8000 --user admin \
        --password-stdin [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.support import chrome_options, sign_in


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    driver = webdriver.Chrome(options=chrome_options())
    try:
        yield driver
    finally:
        driver.quit()


def _until(predicate: Callable[[], Any], timeout: float = 60, step: float = 0.01):
    deadline = time.perf_counter() + timeout
    while True:
        try:
            value = predicate()
        except Exception:  # element not there yet, stale element
            value = None
        if value:
            return value
        if time.perf_counter() > deadline:
            raise TimeoutError("the page did not get there in time")
        time.sleep(step)


def _text(driver: webdriver.Chrome, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def _set_input(driver: webdriver.Chrome, element_id: str, value: str) -> None:
    element = driver.find_element(By.ID, element_id)
    element.click()
    element.send_keys("\ue009a")  # Ctrl+A selects what is there
    element.send_keys("\ue003")  # Backspace
    element.send_keys(value)


def click_to_result(base_url: str, mode: str, driver: Any = None) -> float:
    """Seconds from the click on run to app-status showing SUCCESS (0-second run)."""
    if driver is None:
        with chromium() as own:
            return click_to_result(base_url, mode, own)
    driver.get(base_url.rstrip("/") + "/dash/")
    _until(lambda: _text(driver, "data-total") not in ("", "…"))
    _set_input(driver, "rows-input", "1")
    _set_input(driver, "seconds-input", "0")
    driver.find_element(By.CSS_SELECTOR, f"#mode-select input[value='{mode}']").click()
    before = _text(driver, "app-status")
    started = time.perf_counter()
    driver.find_element(By.ID, "run-button").click()
    _until(
        lambda: (
            (text := _text(driver, "app-status")) != before
            and text.startswith(("SUCCESS", "FAILURE", "REVOKED", "Not started"))
        )
    )
    elapsed = time.perf_counter() - started
    outcome = _text(driver, "app-status")
    if not outcome.startswith("SUCCESS"):
        raise RuntimeError(f"the run did not succeed: {outcome}")
    return elapsed


def grid_first_rows(base_url: str, driver: Any = None) -> float:
    """Seconds from navigating to /dash/ until the data grid shows its first row."""
    if driver is None:
        with chromium() as own:
            return grid_first_rows(base_url, own)
    driver.get("about:blank")
    started = time.perf_counter()
    driver.get(base_url.rstrip("/") + "/dash/")
    _until(
        lambda: driver.find_elements(
            By.CSS_SELECTOR,
            "#data-grid .ag-center-cols-container .ag-row [col-id='value']",
        )[0].text.strip()
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--user", default="admin", help="sign in as this user")
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    args = parser.parse_args()
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else ""
    with chromium() as driver:
        sign_in(driver, args.url, args.user, password)
        for mode in ("background", "queued"):
            times = [
                click_to_result(args.url, mode, driver) for _ in range(args.repeat)
            ]
            print(f"click_to_result[{mode}]: median {statistics.median(times):.3f} s")
        times = [grid_first_rows(args.url, driver) for _ in range(args.repeat)]
        print(f"grid_first_rows: median {statistics.median(times):.3f} s")


if __name__ == "__main__":
    main()
