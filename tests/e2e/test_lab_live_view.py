"""The live view (/lab/) in a real browser: Debian's Chromium, driven by Selenium through chromium-driver.

The whole system runs on a RabbitMQ node of the test's own (the shared broker is never stopped). The test
does what a learner does: opens the page, types the token, sends commands from the page and watches the
figures and the events move; then the broker is stopped and the page lights the replication path, and when it
is back, the broker path again. Screenshots of each step go to var/screenshots/ (an artifact to look at).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from devkit.polling import eventually
from devkit.private_rabbitmq import PrivateRabbitMQ
from devkit.processes import REPO
from tests.e2e.conftest import TOKEN, System

SCREENSHOTS = REPO / "var" / "screenshots"
# A laptop's screen: the page must be usable there (the diagram, the controls and the last events).
WINDOW = (1366, 768)
INSTALL = "make test-e2e installs it (deploy/local/install-missing.sh): apt-get install chromium-driver"


def _tool(*names: str) -> str:
    for name in names:
        if found := shutil.which(name):
            return found
    pytest.fail(f"{names[0]} is missing: {INSTALL}")


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = _tool("chromium", "chromium-browser")
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root, in a container or CI: Chromium's sandbox needs an unprivileged user
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The system's chromedriver, given by path: Selenium then looks for no driver to download.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=_tool("chromedriver")))
    driver.set_page_load_timeout(30)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


class LabPage:
    """The page as a learner sees it, read through the DOM's ids and data attributes."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver

    def element(self, element_id: str) -> WebElement:
        return self.driver.find_element(By.ID, element_id)

    def data(self, element_id: str, name: str) -> str:
        return self.element(element_id).get_attribute(f"data-{name}") or ""

    def number(self, element_id: str, name: str) -> float:
        value = self.data(element_id, name)
        return float(value) if value else 0.0

    def active_path(self) -> str:
        return self.data("pipeline", "active-path")

    def up(self, node: str) -> bool:
        return self.data(f"node-{node}", "up") == "true"

    def type_into(self, element_id: str, text: str) -> None:
        field = self.element(element_id)
        field.clear()
        field.send_keys(text)

    def send(self, button: str) -> str:
        """Clicks a command's button and returns the result line once it changed."""
        before = self.element("result").text
        self.element(button).click()
        return eventually(
            lambda: (text := self.element("result").text) != before and text,
            timeout=30,
            what=f"the result of {button}",
        )

    def my_rows(self) -> list[dict[str, str]]:
        """The last events the page itself caused (its correlation ids), newest first; read in one script,
        since the page replaces the rows on every poll."""
        return self.driver.execute_script(
            "return [...document.querySelectorAll('#events tbody tr.mine')]"
            ".map((row) => ({path: row.dataset.path, correlation_id: row.dataset.correlationId}));"
        )

    def newest_path(self) -> str:
        rows = self.my_rows()
        return rows[0]["path"] if rows else ""

    def screenshot(self, name: str) -> Path:
        """The laptop-sized window as it is, and the whole page at the same width beside it."""
        path = SCREENSHOTS / f"live-view-{name}.png"
        self.driver.save_screenshot(str(path))
        # Headless Chromium keeps a window within its screen, so the whole page is taken by emulating a taller
        # viewport (DevTools), not by resizing the window.
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        metrics = {"width": WINDOW[0], "height": max(WINDOW[1], height), "deviceScaleFactor": 1}
        metrics["mobile"] = False
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        try:
            self.driver.save_screenshot(str(SCREENSHOTS / f"live-view-{name}-full.png"))
        finally:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        return path


@pytest.fixture(scope="module")
def lab(browser: WebDriver, system_on_private_broker: System) -> LabPage:
    browser.get(f"{system_on_private_broker.read_api}/lab/")
    return LabPage(browser)


def test_the_page_shows_the_running_pipeline_on_the_broker_path(lab: LabPage) -> None:
    eventually(lambda: lab.active_path() == "broker", timeout=30, what="the broker path lit")
    for node in ("write", "relay", "broker", "projector", "read-db"):
        assert eventually(lambda node=node: lab.up(node), timeout=15, what=f"{node} shown up")
    assert "broker" in lab.element("status-line").text
    lab.screenshot("1-started")


def test_commands_sent_from_the_page_move_the_counters_and_the_events(lab: LabPage) -> None:
    lab.type_into("token", TOKEN)
    for owner in ("alice", "bob"):
        lab.type_into("owner", owner)
        assert lab.send("open-account").startswith("201"), lab.element("result").text
    lab.type_into("amount", "25.00")
    assert lab.send("deposit").startswith("200")
    lab.type_into("amount", "10.00")
    assert lab.send("transfer").startswith("201")  # alice to bob: two events

    # Four commands, five events: two opened, a deposit, a transfer's debit and credit.
    eventually(lambda: len(lab.my_rows()) == 5, timeout=30, what="the page's five events listed")
    eventually(
        lambda: {row["path"] for row in lab.my_rows()} == {"broker"}, timeout=30, what="all applied by broker"
    )
    eventually(lambda: lab.number("fig-commands", "total") >= 4, timeout=15, what="commands counted")
    eventually(lambda: lab.number("fig-published", "total") >= 5, timeout=15, what="published counted")
    eventually(lambda: lab.number("fig-applied-broker", "total") >= 5, timeout=15, what="applied counted")
    eventually(
        lambda: "p50" in lab.element("fig-lag-p50").text and "ms" in lab.element("fig-lag-p50").text,
        timeout=15,
        what="a lag shown",
    )

    # A read right after a write, with and without min_version: the waited one is always fresh.
    lab.element("stale-read").click()
    eventually(lambda: lab.data("read-compare", "waited-version"), timeout=30, what="both reads")
    written = int(lab.data("read-compare", "written-version"))
    assert int(lab.data("read-compare", "waited-version")) == written
    assert "with min_version" in lab.element("read-compare").text
    lab.screenshot("2-commands")


def test_a_broker_outage_lights_the_replication_path_and_its_end_the_broker_path(
    lab: LabPage, private_broker: PrivateRabbitMQ
) -> None:
    private_broker.stop()
    try:
        eventually(lambda: not lab.up("broker"), timeout=30, what="RabbitMQ shown down")
        eventually(lambda: lab.active_path() == "replication", timeout=90, what="the replication path lit")
        assert "replication" in lab.element("status-line").text
        # Commands still succeed; their events reach the read side through the replica, and the outbox grows.
        for _ in range(3):
            assert lab.send("deposit").startswith("200")
        eventually(
            lambda: lab.newest_path() == "replication", timeout=60, what="an event applied by replication"
        )
        eventually(lambda: lab.number("fig-backlog", "value") >= 3, timeout=30, what="the outbox backlog")
        eventually(lambda: lab.number("fig-applied-replication", "total") >= 3, timeout=30, what="counted")
        lab.screenshot("3-broker-down")
    finally:
        private_broker.start()

    eventually(lambda: lab.up("broker"), timeout=60, what="RabbitMQ shown up again")
    eventually(lambda: lab.active_path() == "broker", timeout=120, what="the broker path lit again")
    eventually(lambda: lab.number("fig-backlog", "value") == 0, timeout=60, what="the outbox drained")
    assert lab.send("deposit").startswith("200")
    eventually(lambda: lab.newest_path() == "broker", timeout=60, what="a new event applied by broker")
    lab.screenshot("4-broker-back")


def test_the_page_broke_no_rule_of_its_content_security_policy(lab: LabPage) -> None:
    messages = [entry["message"] for entry in lab.driver.get_log("browser")]
    assert [m for m in messages if "Content Security Policy" in m or "Refused to" in m] == []
    assert [m for m in messages if "Uncaught" in m] == []
