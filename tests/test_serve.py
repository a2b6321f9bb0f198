"""``xenlab serve`` in a real browser: Debian's headless Chromium loads the page, the panes
appear, a typed command is answered. Skips only where no Chromium is installed."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="no Chromium and chromedriver installed (apt-get install chromium "
                                       "chromium-driver; .ci/run does)")

#: textual-serve keeps its xterm.js Terminal in a field named "terminal": catch it on assignment,
#: so the test can read the screen's rows as text (xterm draws on a canvas).
CATCH_TERMINAL = """
Object.defineProperty(Object.prototype, 'terminal', {
  configurable: true,
  get() { return undefined; },
  set(value) {
    Object.defineProperty(this, 'terminal', {value, writable: true, configurable: true, enumerable: true});
    if (value && value.buffer) { window.__xenlabTerminal = value; }
  },
});
"""
READ_ROWS = """
const t = window.__xenlabTerminal;
if (!t) { return null; }
const b = t.buffer.active, rows = [];
for (let y = 0; y < t.rows; y++) { const line = b.getLine(b.viewportY + y); rows.push(line ? line.translateToString(true) : ''); }
return rows.join('\\n');
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "serve", "native.s", "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        banner = proc.stdout.readline()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        else:
            pytest.fail(f"xenlab serve did not listen on port {port}: {banner}")
        yield port, banner
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_for(driver, words: tuple[str, ...], timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = driver.execute_script(READ_ROWS) or ""
        if all(w in text for w in words):
            return text
        time.sleep(0.2)
    if not driver.execute_script("return !!window.__xenlabTerminal"):
        pytest.fail("the page's xterm Terminal was never caught: has textual-serve renamed its 'terminal' field?")
    pytest.fail(f"{words} never appeared on the served screen; it showed:\n{text}")


def test_the_lab_in_a_browser_answers_a_command(served):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    port, banner = served
    assert f"http://127.0.0.1:{port}" in banner and "this computer only" in banner
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--window-size=1600,1000",
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CATCH_TERMINAL})
        driver.get(f"http://127.0.0.1:{port}")
        driver.find_element(By.TAG_NAME, "body").click()       # textual-serve starts the lab on a click
        _wait_for(driver, ("CPU", "Command output", "xen>"))
        box = driver.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea")
        box.send_keys("regs\n")
        text = _wait_for(driver, ("xen> regs", "rflags"))
        assert "cr3" in text
    finally:
        driver.quit()
