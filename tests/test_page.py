"""The live page (GET /) in a real browser: headless Chromium, driven by Selenium, against a
real server with its HTTP port on. One browser and one server serve the whole module; the
market clock is off, so the tests tick the market themselves and know every price."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from marketdata.v1 import market_data_pb2 as pb
from marketdata.v1 import market_data_pb2_grpc
from server.sim.universe import DEFAULT_MARKET
from tests.browser import chrome
from tests.conftest import ServerThread

WAIT_SECONDS = 20  # the longest any one thing on the page may take to show
SYMBOLS = [i.symbol for i in DEFAULT_MARKET.instruments]
GBM_EXAMPLE = pb.GbmModel(start_price=70, mu=0.05, sigma=0.3)  # the form's defaults, the proto's examples

# Pixels of a canvas within 40 of an RGB colour in every channel.
COUNT_PIXELS = """
const [selector, r, g, b] = arguments;
const canvas = document.querySelector(selector);
if (!canvas) return 0;
const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
let n = 0;
for (let i = 0; i < data.length; i += 4) {
  if (Math.abs(data[i] - r) < 40 && Math.abs(data[i + 1] - g) < 40 && Math.abs(data[i + 2] - b) < 40) n += 1;
}
return n;
"""
ACCENT, UP, DOWN = (0x58, 0xA6, 0xFF), (0x3D, 0xDC, 0x97), (0xFF, 0x6B, 0x6B)  # style.css


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerThread]:
    server = ServerThread(http_port=0)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(srv: ServerThread) -> Iterator[WebDriver]:
    driver = chrome(1280, 900)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def stub(srv: ServerThread) -> Iterator[market_data_pb2_grpc.MarketDataServiceStub]:
    with grpc.insecure_channel(srv.target) as channel:
        yield market_data_pb2_grpc.MarketDataServiceStub(channel)


def wait(driver: WebDriver) -> WebDriverWait:
    return WebDriverWait(driver, WAIT_SECONDS)


def text(driver: WebDriver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def attribute(driver: WebDriver, css: str, name: str) -> str | None:
    return driver.find_element(By.CSS_SELECTOR, css).get_attribute(name)


def price_cell(symbol: str) -> str:
    return f'#quote-rows tr[data-symbol="{symbol}"] .price'


def open_page(driver: WebDriver, srv: ServerThread) -> None:
    """Load the page and wait until it shows the market's current tick."""
    driver.get(f"http://127.0.0.1:{srv.running.http_port}/")
    shows_now(driver, srv)


def shows_now(driver: WebDriver, srv: ServerThread) -> None:
    sequence = str(srv.running.servicer.feed.last.sequence)
    wait(driver).until(
        lambda d: attribute(d, "#status", "data-state") == "connected" and text(d, "#sequence") == sequence
    )


def fill(driver: WebDriver, element_id: str, value: str) -> None:
    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(value)


def submit_path(driver: WebDriver, **fields: str) -> None:
    """Fill the path form (``model`` and ``bar_interval`` are selects) and submit it."""
    if "model" in fields:
        Select(driver.find_element(By.ID, "model")).select_by_value(fields.pop("model"))
    if "bar_interval" in fields:
        Select(driver.find_element(By.ID, "bar-interval")).select_by_value(fields.pop("bar_interval"))
    for element_id, value in fields.items():
        fill(driver, element_id.replace("_", "-"), value)
    driver.find_element(By.ID, "path-submit").click()


def drawn(driver: WebDriver, generation: int, seed: str) -> None:
    """Wait until the path chart drew reply number ``generation``, made with ``seed``."""
    wait(driver).until(
        lambda d: (
            attribute(d, "#path-chart", "data-generation") == str(generation)
            and text(d, "#path-seed") == seed
        )
    )


def generation(driver: WebDriver) -> int:
    return int(attribute(driver, "#path-chart", "data-generation") or 0)


def signed(value: float) -> str:
    """A change as the page writes it: sign (a true minus), two decimals."""
    shown = f"{abs(value):.2f}"
    if float(shown) == 0:
        return shown
    return ("+" if value > 0 else "\u2212") + shown


def test_prices_on_the_page_follow_the_markets_ticks(browser, srv):
    open_page(browser, srv)
    feed = srv.running.servicer.feed
    before = text(browser, price_cell("ACME"))
    assert before == f"{feed.last.prices[0]:.2f}"
    points = int(attribute(browser, "#live-chart", "data-points"))
    for _ in range(100):  # ticks until ACME's price moves on its 0.01 grid; each tick is ~0.01
        srv.advance_market(5)
        if f"{feed.last.prices[0]:.2f}" != before:
            break
    else:
        pytest.fail("ACME did not move in 500 ticks")
    shows_now(browser, srv)
    tick = feed.last
    for symbol, price, instrument in zip(SYMBOLS, tick.prices, DEFAULT_MARKET.instruments, strict=True):
        row = f'#quote-rows tr[data-symbol="{symbol}"]'
        assert text(browser, price_cell(symbol)) == f"{price:.2f}", symbol
        assert float(attribute(browser, price_cell(symbol), "data-price")) == price, symbol
        assert text(browser, f"{row} .change") == signed(price - instrument.start_price), symbol
    assert text(browser, price_cell("ACME")) != before
    # ACME is selected: its chart gained the ticks and ends at its last price.
    assert int(attribute(browser, "#live-chart", "data-points")) > points
    assert float(attribute(browser, "#live-chart", "data-last")) == tick.prices[0]


def test_a_click_on_a_row_charts_that_instrument(browser, srv):
    open_page(browser, srv)
    browser.find_element(By.CSS_SELECTOR, '#quote-rows tr[data-symbol="GLOBEX"]').click()
    wait(browser).until(lambda d: text(d, "#live-symbol") == "GLOBEX")
    assert "selected" in attribute(browser, '#quote-rows tr[data-symbol="GLOBEX"]', "class")
    assert "selected" not in attribute(browser, '#quote-rows tr[data-symbol="ACME"]', "class")
    srv.advance_market(3)
    shows_now(browser, srv)
    assert float(attribute(browser, "#live-chart", "data-last")) == srv.running.servicer.feed.last.prices[1]


def test_the_form_draws_the_path_the_server_sends(browser, srv, stub):
    open_page(browser, srv)
    before = generation(browser)
    submit_path(browser, model="gbm", periods="300", delta="1", seed="4242")
    drawn(browser, before + 1, "4242")
    reply = stub.GetPrices(pb.PathRequest(periods=300, delta=1, seed=4242, gbm=GBM_EXAMPLE))
    assert attribute(browser, "#path-chart", "data-mode") == "path"
    assert attribute(browser, "#path-chart", "data-points") == "300"
    assert float(attribute(browser, "#path-first", "data-value")) == reply.prices[0]
    assert float(attribute(browser, "#path-last", "data-value")) == reply.prices[-1]
    assert text(browser, "#path-last") == f"{reply.prices[-1]:.4f}"
    assert browser.execute_script(COUNT_PIXELS, "#path-chart canvas", *ACCENT) > 300, "no line on the chart"


def test_the_form_draws_candles_from_bars(browser, srv, stub):
    open_page(browser, srv)
    before = generation(browser)
    submit_path(browser, model="heston", bar_interval="1d", periods="400", delta="0.1", seed="11")
    drawn(browser, before + 1, "11")
    # Choosing bars filled in the start time the bars need; the request carried it.
    start = browser.find_element(By.ID, "start-time").get_attribute("value")
    assert start == "2026-01-02T14:30:00Z"
    request = pb.PathRequest(
        periods=400,
        delta=0.1,
        seed=11,
        heston=pb.HestonModel(start_price=70, mu=0.05, v0=0.09, kappa=2, theta=0.09, xi=0.3, rho=-0.7),
        bar_interval="1d",
    )
    request.time.start_time.FromJsonString(start)
    bars = stub.GetPrices(request).bars
    assert attribute(browser, "#path-chart", "data-mode") == "bars"
    assert attribute(browser, "#path-chart", "data-points") == str(len(bars.open))
    assert float(attribute(browser, "#path-first", "data-value")) == bars.open[0]
    assert float(attribute(browser, "#path-last", "data-value")) == bars.close[-1]
    candles = sum(browser.execute_script(COUNT_PIXELS, "#path-chart canvas", *c) for c in (UP, DOWN))
    assert candles > 300, "no candles on the chart"


def test_a_refused_request_shows_the_servers_message(browser, srv):
    open_page(browser, srv)
    assert not browser.find_element(By.ID, "path-error").is_displayed()
    request = urllib.request.Request(
        f"http://127.0.0.1:{srv.running.http_port}/marketdata.v1.MarketDataService/GetPrices",
        data=json.dumps(
            {"periods": 0, "delta": 1, "gbm": {"startPrice": 70, "mu": 0.05, "sigma": 0.3}}
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=WAIT_SECONDS)
    assert refused.value.code == 400
    message = json.loads(refused.value.read())["message"]
    assert "periods" in message
    submit_path(browser, model="gbm", periods="0", delta="1")
    wait(browser).until(lambda d: d.find_element(By.ID, "path-error").is_displayed())
    assert text(browser, "#path-error") == message


def test_the_page_logs_no_errors_to_the_console(browser, srv):
    browser.get_log("browser")  # drops what earlier tests left, such as the refused request's 400
    open_page(browser, srv)
    srv.advance_market(20)
    shows_now(browser, srv)
    browser.find_element(By.CSS_SELECTOR, '#quote-rows tr[data-symbol="UMBRELLA"]').click()
    before = generation(browser)
    # Seed 0 is a default, so protobuf JSON leaves it out of the reply: the page still shows it.
    submit_path(browser, model="merton", periods="200", delta="1", seed="0")
    drawn(browser, before + 1, "0")
    submit_path(browser, model="ornsteinUhlenbeck", bar_interval="1d", delta="0.25", seed="5")
    drawn(browser, before + 2, "5")
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def test_a_phone_sized_window_has_no_horizontal_scroll(browser, srv):
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True},
    )
    widths = "return [document.documentElement.scrollWidth, window.innerWidth]"
    try:
        open_page(browser, srv)
        width, inner = browser.execute_script(widths)
        assert inner == 390
        assert width <= inner
        before = generation(browser)
        # Candles carry the widest legend (five series); the error message the longest line.
        submit_path(browser, model="heston", bar_interval="1d", periods="300", delta="0.1", seed="8")
        drawn(browser, before + 1, "8")
        assert browser.execute_script(widths) == [width, inner]
        submit_path(browser, periods="0")
        wait(browser).until(lambda d: d.find_element(By.ID, "path-error").is_displayed())
        assert browser.execute_script(widths) == [width, inner]
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_a_server_that_needs_tokens_gets_a_plain_message(browser, tmp_path: Path):
    tokens = tmp_path / "tokens"
    tokens.write_text("alice:" + "t" * 32 + "\n")
    locked = ServerThread(http_port=0, auth_tokens=str(tokens))
    try:
        browser.get(f"http://127.0.0.1:{locked.running.http_port}/")
        wait(browser).until(lambda d: d.find_element(By.ID, "notice").is_displayed())
        assert "--auth-tokens" in text(browser, "#notice")
        assert attribute(browser, "#status", "data-state") == "closed"
    finally:
        browser.get("about:blank")
        locked.stop()
