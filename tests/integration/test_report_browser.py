"""The HTML report in a real browser: headless Chromium through chromium-driver (issue 13).

A small simulated cohort runs through the workflow and ``--report``; the report is opened in
headless Chromium, which must log no console error; the landing page must show the
simulated-data banner and the key results table, and a table result (the associations) must
render as a sortable, searchable table. Screenshots go to ``results/screenshots/`` of the
repository (the README shows them).

Installing Chromium changes the machine, so it happens only with ``CD8EXO_SYSTEM_TESTS=1`` as
root (``tests/system_opt_in.py``; CI sets it): Debian's ``chromium`` and ``chromium-driver``
are installed with apt-get when missing (they stay installed). The browser is driven over the
W3C WebDriver protocol on 127.0.0.1 with the standard library (no Selenium). Building the
report takes minutes: the test is marked slow (``make test-slow``).
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from system_opt_in import require_system_opt_in
from workflow_helpers import ROOT, run_snakemake, small_cohort_row, write_config

pytestmark = pytest.mark.slow

PACKAGES = ("chromium", "chromium-driver")
SCREENSHOTS = ROOT / "results" / "screenshots"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def _install_chromium() -> tuple[str, str]:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=900)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
        check=True,
        timeout=1800,
    )
    return shutil.which("chromium"), shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebDriver:
    """The few W3C WebDriver commands the test needs, over HTTP on 127.0.0.1."""

    def __init__(self, url: str, browser: str) -> None:
        self.url = url
        options = {
            "binary": browser,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"],
        }
        caps = {
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": {"browser": "ALL"},
        }
        self.session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})[
            "sessionId"
        ]

    def _call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=300) as response:
            return json.loads(response.read())["value"]

    def cmd(self, method: str, path: str, body: dict | None = None):
        return self._call(method, f"/session/{self.session}{path}", body)

    def run(self, script: str, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait_for(self, script: str, *, timeout_s: float = 60.0):
        """Poll ``script`` until it returns something truthy (not a timing assertion: a bound)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = self.run(script)
            if value:
                return value
            time.sleep(0.5)
        return self.run(script)

    def console(self) -> list[dict]:
        return self.cmd("POST", "/se/log", {"type": "browser"})

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.cmd("GET", "/screenshot")))

    def close(self) -> None:
        self.cmd("DELETE", "")


@pytest.fixture(scope="module")
def browser():
    require_system_opt_in(
        "install Debian's chromium and chromium-driver with apt-get when missing "
        "(they stay installed) and open the report in headless Chromium",
        as_root=True,
    )
    chromium, chromedriver = _install_chromium()
    port = _free_port()
    driver = subprocess.Popen(
        [chromedriver, f"--port={port}", "--allowed-ips=127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url + "/status", timeout=5)
                break
            except OSError:
                time.sleep(0.3)
        session = WebDriver(url, chromium)
        yield session
        session.close()
    finally:
        driver.terminate()
        driver.wait(timeout=30)


@pytest.fixture(scope="module")
def report(small_cohort, tmp_path_factory):
    """The report of a small simulated cohort (the sheet marks it simulated)."""
    workdir = tmp_path_factory.mktemp("report_run")
    config = write_config(workdir, [small_cohort_row(small_cohort, simulated="true")])
    run_snakemake(workdir, "--configfile", str(config), "--cores", "2")
    run_snakemake(workdir, "--configfile", str(config), "--report", "report.html", "--cores", "1")
    return workdir / "report.html"


def _errors(entries: list[dict]) -> list[str]:
    return [e["message"] for e in entries if e.get("level") == "SEVERE"]


def test_report_opens_on_key_results_and_renders_a_table(browser, report):
    browser.cmd("POST", "/url", {"url": report.as_uri()})
    landing = browser.wait_for(
        "return document.getElementById('key-results-table') ? document.body.innerText : '';"
    )
    assert "Key results" in landing
    assert "SIMULATED DATA: small is simulated" in landing
    rows = browser.run("return document.querySelectorAll('#key-results-table tbody tr').length;")
    assert rows >= 3  # PLP2, its controls: per dataset and pooled rows
    browser.run("document.querySelectorAll('*').forEach(e => { e.scrollTop = 0; });")
    browser.screenshot(SCREENSHOTS / "report_landing.png")

    path = "results/report/tables/associations.html"
    browser.run(
        "app.setView({content: 'html', contentPath: results[arguments[0]].data_uri, "
        "resultPath: arguments[0]});",
        path,
    )
    frame = browser.wait_for("return document.querySelector('iframe');")
    browser.cmd("POST", "/frame", {"id": {ELEMENT: frame[ELEMENT]}})
    n_rows = browser.wait_for("return document.querySelectorAll('table.cd8exo tbody tr').length;")
    assert n_rows == 52  # 4 signatures x 13 targets
    # a click on the rho header sorts the rows by rho
    values = browser.run(
        "var th=[...document.querySelectorAll('table.cd8exo thead th')]"
        ".find(h=>h.textContent==='rho'); th.click();"
        "var col=[...th.parentNode.children].indexOf(th);"
        "return [...document.querySelectorAll('table.cd8exo tbody tr')]"
        ".map(r=>parseFloat(r.cells[col].getAttribute('data-value')));"
    )
    finite = [v for v in values if v is not None and v == v]
    assert finite == sorted(finite)
    # the search box keeps the matching rows only
    shown = browser.run(
        "var box=document.querySelector('input.cd8exo-search'); box.value='PLP2';"
        "box.dispatchEvent(new Event('input'));"
        "return [...document.querySelectorAll('table.cd8exo tbody tr')]"
        ".filter(r=>r.style.display!=='none').length;"
    )
    assert shown == 4  # one per signature
    browser.cmd("POST", "/frame/parent", {})
    browser.screenshot(SCREENSHOTS / "report_table.png")
    assert _errors(browser.console()) == []
