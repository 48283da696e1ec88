"""A headless Chromium for the live page's tests and its screenshot.

Debian's ``chromium`` and ``chromedriver`` are found on PATH and named to Selenium, so
Selenium Manager never looks for (or downloads) a browser or a driver of its own.
"""

from __future__ import annotations

import shutil

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

MISSING = (
    "the live page's tests need chromium and chromedriver on PATH: "
    "apt-get install chromium chromium-driver (make test installs them)"
)


def chrome(width: int = 1280, height: int = 900) -> webdriver.Chrome:
    """A new headless browser with a ``width`` x ``height`` window that keeps its console log."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver is None:
        raise RuntimeError(MISSING)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless=new",
        "--no-sandbox",  # root in CI and in containers
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)
