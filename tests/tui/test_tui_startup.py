"""Start-up: the machine boots before the screen loads, and the first frame shows it whole."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading

import pytest
from pathlib import Path

from lab.paths import KERNELS
from lab.tui.app import XenLab, make_app
from lab.tui.launch import await_boot, start_runner
from lab.tui.runner import BOOTING, PAUSED
from lab.tui.widgets.domains import DomainTree
from tui_support import THEME, lab, run, settle

ROOT = Path(__file__).resolve().parents[2]
NATIVE = str(KERNELS / "native.s")


def test_start_runner_on_a_thread_returns_with_the_machine_booted():
    runner = start_runner(NATIVE, wait=60, process=False)
    try:
        assert runner.booted.is_set() and runner.session is not None and runner.mode == PAUSED
    finally:
        runner.close()


def test_a_slow_boot_does_not_hold_the_screen_back():
    release = threading.Event()
    from lab.tui import launch

    def slow_session(target, record):
        release.wait(30)
        raise AssertionError("not reached: the test ends the boot first")
    real = launch.build_session
    launch.build_session = slow_session
    try:
        runner = start_runner(NATIVE, wait=0.05, process=False)
        assert not runner.booted.is_set() and runner.mode == BOOTING
    finally:
        launch.build_session = real
        release.set()
    assert runner.booted.wait(30)       # the boot ended (here with an error), and says so
    runner.close()


def test_the_first_frame_of_a_booted_machine_shows_it_and_its_status():
    """No timer tick has run (the pump's interval is a minute): what the screen shows
    comes from mounting, so the first frame has the panes and the status bar filled.
    The machine boots in its own process while this one loads the screen."""
    runner = start_runner(None, wait=60, process=True)
    assert runner.separate_process
    await_boot(runner)
    assert runner.booted.is_set() and runner.view is not None

    async def go():
        app = make_app(theme=THEME, runner=runner, tick=60)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            assert app.ticks == 1 and app.view is not None
            tree = app.main.query_one(DomainTree)
            labels = [str(node.label) for node in tree.root.children]
            assert any("hvm-guest" in label for label in labels), labels
            status = str(app.main.query_one("#status").render())
            assert "host clock" in status, status
    run(go())


def test_xenlab_starts_the_machine_before_it_loads_textual():
    code = """
import sys
import lab.tui.launch as launch
def start_runner(*args, **kwargs):
    print("textual loaded" if "textual" in sys.modules else "textual not loaded")
    raise SystemExit(0)
launch.start_runner = start_runner
from lab.cli import main
main([])
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "textual not loaded", out.stdout + out.stderr



@pytest.mark.machine
@pytest.mark.parametrize("asked", [False, True])
def test_the_lab_freezes_what_it_holds_once_its_first_view_is_drawn_only_when_asked(monkeypatch, asked):
    happened: list[str] = []
    show_view = XenLab.show_view

    def showing(app, view):
        happened.append("view")
        show_view(app, view)
    monkeypatch.setattr(XenLab, "show_view", showing)
    # Record the freeze instead of freezing this process (it runs other screens' tests).
    monkeypatch.setattr(gc, "freeze", lambda: happened.append("freeze"))

    async def go():
        async with lab(size=(80, 24), freeze_after_start=asked) as (app, pilot):
            app.runner.command("step 5")
            await settle(pilot, app)
            await pilot.pause()
    run(go())
    assert happened.count("view") >= 2
    if asked:       # once, after the first view
        assert happened[:2] == ["view", "freeze"] and happened.count("freeze") == 1
    else:
        assert "freeze" not in happened
