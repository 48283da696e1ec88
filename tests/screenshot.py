"""Remakes docs/live-page.png: the live page with the market ticking and a path drawn.

    .venv/bin/python -m tests.screenshot [--out docs/live-page.png]

Starts a server of its own (market clock on, HTTP on a free loopback port), lets the live
chart gather about half a minute of ticks, draws Heston candles with the form, and saves
what headless Chromium shows (the same browser as tests/test_page.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import chrome
from tests.conftest import REPO_ROOT, ServerThread
from tests.test_page import submit_path

TICKS = 300  # points on the live chart before the picture is taken (30 s at the default 0.1 s a tick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "live-page.png")
    args = parser.parse_args()
    srv = ServerThread(market_clock=True, http_port=0)
    browser = chrome(1280, 900)
    try:
        browser.get(f"http://127.0.0.1:{srv.running.http_port}/")
        chart = browser.find_element(By.ID, "live-chart")
        WebDriverWait(browser, TICKS / 10 + 30).until(
            lambda d: int(chart.get_attribute("data-points")) >= TICKS
        )
        submit_path(browser, model="heston", bar_interval="1d", periods="900", delta="0.1", seed="7")
        WebDriverWait(browser, 30).until(
            lambda d: d.find_element(By.ID, "path-chart").get_attribute("data-generation")
        )
        height, frame = browser.execute_script(
            "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]"
        )
        browser.set_window_size(1280, height + frame)
        # A tick more, so the resized window has painted and a price or two is flashing.
        sequence = browser.find_element(By.ID, "sequence").text
        WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "sequence").text != sequence)
        browser.save_screenshot(str(args.out))
    finally:
        browser.quit()
        srv.stop()
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
