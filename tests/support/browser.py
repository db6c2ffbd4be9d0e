"""Headless Chromium for the browser tests and the Dash benchmark: its options,
and signing in through the /login form."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.support.basics import wait_for

if TYPE_CHECKING:
    from selenium.webdriver.chrome.options import Options as ChromeOptions


# The password of the users tests sign in with through the /login form.
BROWSER_PASSWORD = "correct horse battery"


def sign_in(driver: Any, base_url: str, name: str, password: str) -> None:
    """Sign in through the /login form in a real browser (Selenium), as a person
    would; wait to be let in. Used by the browser tests and the Dash benchmark."""
    login = base_url.rstrip("/") + "/login"
    driver.get(login)
    # Cookies ignore ports: drop whatever an earlier test's server left.
    driver.delete_all_cookies()
    driver.get(login)
    driver.find_element("id", "username").send_keys(name)
    driver.find_element("id", "password").send_keys(password)
    driver.find_element("css selector", "#login-form button").click()
    wait_for(lambda: "/login" not in driver.current_url, what="signed in")


def chrome_options() -> ChromeOptions:
    """Selenium's options for the headless Chromium that the browser tests and the
    Dash benchmark drive: no sandbox or GPU (containers, root), no /dev/shm (small
    in containers), no background network traffic, one window size for the layout."""
    # Imported here: the bench installs, which import this module, lack selenium.
    from selenium.webdriver.chrome.options import Options

    options = Options()
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    return options
