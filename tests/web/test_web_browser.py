"""The web view in a real browser: headless Chromium against ``run_client.py --web`` and the
cluster it starts. A put, its messages and its value on all five replicas; step mode; a crashed
replica, the abort it causes, its restart and the recovery; a past round clicked on; a pause. A screenshot of each step goes to
the test's directory (and to $RMI_KV_WEB_SCREENSHOTS when set, as docs/web/ was made).

Needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver) and
selenium; without them it skips, saying what to install.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from rmi_kv.server.cluster import ChildProcess, wait_for

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
INSTALL = "apt-get install -y chromium chromium-driver, and pip install selenium (the [test] extra)"

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
except ImportError:  # said by the skip below
    webdriver = None


def _missing() -> list[str]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    return missing + ([] if webdriver is not None else ["the selenium package"])


pytestmark = pytest.mark.skipif(bool(_missing()), reason=f"the browser test needs {', '.join(_missing())}: {INSTALL}")


@pytest.fixture
def web(tmp_path):
    """``run_client.py --web --failover off`` (strict 2PC: a crashed replica aborts every write until it
    returns) on an OS-chosen port; its URL. Stopped, with its cluster, afterwards."""
    command = [sys.executable, "-m", "rmi_kv.cli.main", "--web", "--port", "0", "--failover", "off"]
    env = {key: value for key, value in os.environ.items() if key != "RMI_KV_FAILPOINTS"}
    child = ChildProcess("web", command, tmp_path / "web.log", env)
    try:
        yield child.wait_ready(60.0)
    finally:
        code = child.stop(20.0)
        assert code == 0, child.log_tail()


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,1350"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The page as the test reads and clicks it; each step's screenshot is kept."""

    def __init__(self, driver, directory: Path) -> None:
        self.driver = driver
        self.directory = directory
        self.shots = 0
        extra = os.environ.get("RMI_KV_WEB_SCREENSHOTS")
        self.extra = Path(extra) if extra else None

    def shot(self, name: str) -> None:
        self.shots += 1
        path = self.directory / f"{self.shots:02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        if self.extra is not None:
            self.extra.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, self.extra / path.name)

    # each read is one script, so that a part of the page redrawn meanwhile is never read half
    def texts(self, selector: str) -> list[str]:
        return self.driver.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map((e) => e.textContent)", selector)

    def states(self) -> dict[str, str]:
        return self.driver.execute_script(
            "return Object.fromEntries([...document.querySelectorAll('.node-card')]"
            ".map((card) => [card.dataset.replica, card.dataset.state]))")

    def values(self, key: str) -> dict[str, str]:
        return self.driver.execute_script(
            "return Object.fromEntries([...document.querySelectorAll('td.value')]"
            ".filter((cell) => cell.dataset.key === arguments[0])"
            ".map((cell) => [cell.dataset.replica, cell.textContent]))", key)

    def timeline(self, outcome: str) -> list[str]:
        return self.texts(f'#timeline li[data-outcome="{outcome}"]')

    def until(self, condition, what: str, timeout: float = 15.0):
        return wait_for(condition, timeout=timeout, interval=0.1, what=what)

    def put(self, key: str, value: str, through: str) -> str:
        """Send a put from the form; the result line once it is there."""
        find = self.driver.find_element
        Select(find(By.ID, "op")).select_by_value("put")
        for field, text in (("key", key), ("value", value)):
            find(By.ID, field).clear()
            find(By.ID, field).send_keys(text)
        Select(find(By.ID, "through")).select_by_value(through)
        find(By.ID, "submit").click()
        return self.until(lambda: self._result(), f"the answer to put {key}")

    def _result(self) -> str:
        result = self.driver.find_element(By.ID, "result")
        return result.get_attribute("class") + ": " + result.text if "…" not in result.text and result.text else ""

    def press(self, action: str, replica: str) -> str:
        self.driver.find_element(By.CSS_SELECTOR, f'button[data-action="{action}"][data-replica="{replica}"]').click()
        return self.until(lambda: self._result(), f"the answer to {action} {replica}", timeout=30.0)

    def messages(self) -> list[str]:
        return self.driver.execute_script(
            "return [...document.querySelectorAll('#messages tr.msg')].map((row) => row.dataset.message)")

def test_a_put_its_messages_and_values_then_a_crash_the_abort_and_the_recovery(web, browser, tmp_path):
    page = Page(browser, tmp_path)
    browser.get(web)
    names = [f"replica{n}" for n in range(1, 6)]
    page.until(lambda: page.states() == {name: "serving" for name in names}, "five serving replicas in the page")
    page.shot("cluster")

    # a put through replica2: every message of its round arrives, flies, and the value is on all five
    browser.execute_script("const speed = document.getElementById('speed'); speed.value = 250; "
                           "speed.dispatchEvent(new Event('input'))")
    assert page.put("color", "blue", "replica2").startswith("result ok: PUT color = 'blue' through replica2")
    page.until(lambda: browser.find_elements(By.CSS_SELECTOR, "#flying g.msg"), "a message flying")
    committed = page.until(lambda: [item for item in page.timeline("committed") if "color=blue" in item],
                           "the transaction with its writes in the timeline")
    assert "replica2 put color=blue committed" in committed[0]
    expected = ["canCommit", "vote", "decision", "doCommit", "haveCommitted", "answer"]
    page.until(lambda: all(message in page.messages() for message in expected), "every message of the round")
    assert page.messages().count("vote") == 5 and page.messages().count("haveCommitted") == 4
    page.until(lambda: page.values("color") == {name: "blue" for name in names}, "blue on all five replicas")
    page.shot("put-committed")

    # step mode: the page holds the messages of the next write until each is clicked on
    browser.find_element(By.ID, "skip").click()
    browser.find_element(By.ID, "step-mode").click()
    assert page.put("shape", "round", "replica4").startswith("result ok")
    waiting = page.until(lambda: _waiting(browser), "messages held in step mode")
    # nothing gives the outcome away before its messages are shown
    assert not [item for item in page.texts("#timeline li") if "shape=round" in item]
    assert not any("shape=round" in line for line in page.texts("#log li"))
    browser.find_element(By.ID, "step-next").click()
    page.until(lambda: _waiting(browser) < waiting, "one step further")
    page.shot("step-mode")
    browser.find_element(By.ID, "step-mode").click()
    browser.find_element(By.ID, "skip").click()

    # replica3 crashes: a write aborts everywhere (strict protocol), naming it
    assert page.press("crash", "replica3").startswith("result ok: replica3 crashed")
    page.until(lambda: page.states()["replica3"] == "down", "replica3 down in the page")
    answer = page.put("color", "red", "replica1")
    assert answer.startswith("result error:") and "aborted" in answer and "replica3" in answer, answer
    page.until(lambda: page.timeline("aborted"), "the aborted transaction in the timeline")
    page.until(lambda: "doAbort" in page.messages() or "decision" in page.messages(), "the abort's messages")
    assert any("replica3 is down" in line for line in page.texts("#log li"))
    assert page.values("color")["replica1"] == "blue"
    page.shot("crash-abort")

    # it restarts, recovers, and the next write reaches all five again
    assert page.press("restart", "replica3").startswith("result ok: replica3 restarted")
    page.until(lambda: page.states()["replica3"] == "serving", "replica3 serving again", timeout=20.0)
    assert page.put("color", "green", "replica1").startswith("result ok")
    page.until(lambda: page.values("color") == {name: "green" for name in names}, "green on all five replicas")
    assert any("replica3 is serving" in line for line in page.texts("#log li"))
    page.shot("recovered")

    # back in the timeline: the first write's round, replayed; a paused replica and its return
    browser.execute_script("[...document.querySelectorAll('#timeline li')].pop().click()")
    assert page.texts("#selected-txid")[0].startswith("replica2:") and page.messages().count("vote") == 5
    assert page.press("pause", "replica5").startswith("result ok: replica5 paused")
    page.until(lambda: page.states()["replica5"] == "paused", "replica5 paused in the page")
    assert page.press("resume", "replica5").startswith("result ok: replica5 resumed")
    page.until(lambda: page.states()["replica5"] == "serving", "replica5 serving again")


def _waiting(browser) -> int:
    text = browser.execute_script("return document.getElementById('queued').textContent")
    return int(text.split()[0]) if text[:1].isdigit() else 0
