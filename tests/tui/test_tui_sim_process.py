"""The simulation in a process of its own: the runner's contract, the child's end, the screen on it.

Each test forks a machine booted once for the module: the child gets a copy of it as it is,
so a test costs a fork, not a boot.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.paths import KERNELS
from lab.session import live
from lab.session.build import native_machine
from lab.session.session import Session
from lab.trace import Event
from lab.tui.runner import CRASHED, PAUSED, RUNNING, SPEEDS, STOPPED
from lab.tui.sim_process import LOG_ROWS, ProcessRunner, shown_events
from lab.tui.state import CALL_KINDS, IO_KINDS
from tui_support import THEME, command, output_text, run, settle

ROOT = Path(__file__).resolve().parents[2]
NATIVE = str(KERNELS / "native.s")


@pytest.fixture(scope="module")
def booted():
    """A bare machine booted once, with time travel (as the screen opens one); never run here."""
    return live.open_session([NATIVE])


@pytest.fixture
def runner(booted):
    r = ProcessRunner(booted)
    r.start()
    assert r.wait_idle(30)
    yield r
    r.close()
    assert_gone(r.pid)


def assert_gone(pid: int) -> None:
    """The child has exited and been waited for: no process, not even a zombie."""
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def wait_for(condition, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "never got there"
        time.sleep(0.005)


def test_boot_step_command_and_view(runner, booted):
    assert runner.pid != os.getpid() and runner.mode == PAUSED and runner.booted.is_set()
    first = runner.view
    assert first.cpu["label"] == "bare metal" and first.cpu["icount"] == 0
    assert first.images and all(first.images.values())      # the loaded images came across once
    runner.step(3)
    runner.command("regs")
    runner.command("nonsense")
    assert runner.wait_idle()
    assert runner.view.gen > first.gen and runner.view.cpu["icount"] == 3
    replies = runner.drain_replies()
    assert [r.kind for r in replies] == ["info", "out", "err"]
    assert "rflags" in replies[1].text and "unknown command" in replies[2].text
    # the images of a later view are the same objects: sent once, named by number afterwards
    dom = next(dom for dom, images in first.images.items() if images)
    assert runner.view.images[dom][0] is first.images[dom][0]
    assert booted.machine.cpu.icount == 0          # the machine ran in the child, not here


def test_run_pause_and_the_events_the_logs_can_show(runner):
    headless = live.open_session([NATIVE])
    headless.run(None)
    trace = list(headless.machine.trace.recent(100_000))
    runner.set_speed(0)                             # one instruction a tick: slow enough to pause
    runner.run()
    wait_for(lambda: runner.mode == RUNNING)
    runner.pause()
    assert runner.wait_idle() and runner.mode == PAUSED
    assert 0 < runner.view.cpu["icount"] < 1000
    runner.set_speed(len(SPEEDS) - 1)               # full speed, to the end
    runner.run()
    assert runner.wait_idle(30)
    assert runner.mode == STOPPED and runner.view.stopped == "power off"
    # every event counted; the logs' kinds all came, in order, and no other kind
    assert runner.stats.events_seen == len(trace)
    got = runner.drain_events(100_000)
    assert all(isinstance(e, Event) for e in got)
    want = [e for e in trace if e.kind in CALL_KINDS + IO_KINDS]
    assert [(e.seq, e.kind, e.data) for e in got] == [(e.seq, e.kind, e.data) for e in want]
    assert runner.stats.instructions == headless.machine.cpu.icount


def test_a_batch_carries_at_most_what_each_log_keeps():
    evs = [Event(i, i, 0, None, 0, kind, {}) for i, kind in
           enumerate(["hypercall"] * (LOG_ROWS + 5) + ["boot"] * 3 + ["ioport"] * 10 + ["trap"])]
    out = shown_events(evs)
    assert len(out) == LOG_ROWS + 10
    assert [e.seq for e in out] == sorted(e.seq for e in out)       # in order
    assert sum(e.kind in CALL_KINDS for e in out) == LOG_ROWS and out[-1].kind == "trap"
    assert not any(e.kind == "boot" for e in out)


def test_recording_indicator_and_the_end_line_on_quit(booted, tmp_path):
    rec = tmp_path / "s.xlrec"
    r = ProcessRunner(booted)
    r.start()
    try:
        assert r.wait_idle(30) and not r.recording and r.time_travel
        r.command(f"record on {rec}")
        r.step(2)
        assert r.wait_idle() and r.recording
        r.command("record off")
        assert r.wait_idle() and not r.recording
        r.command(f"record on {rec}")
        r.step(1)
        r.run(500)
        r.command("regs")
        assert r.wait_idle() and r.recording
    finally:
        r.close()
    assert_gone(r.pid)
    assert r.exit_status == 0                        # quit as asked, not killed
    last = json.loads(rec.read_text().splitlines()[-1])
    assert last["t"] == "end"                        # the child closed the recording on quit
    # and the recording made through the screen's process replays exactly
    from lab.session.recording import load_recording
    from lab.session.replay import replay
    result = replay(load_recording(rec), verify=True)
    assert result.divergence is None and result.session.machine.cpu.icount == 503


def test_a_lesson_action_is_done_by_the_tutor_in_the_child(tmp_path):
    from lab.lessons.model import find_lesson
    from lab.lessons.progress import Progress
    from lab.tui.launch import make_runner
    progress = Progress(tmp_path / "p.json")
    r = make_runner(lesson=find_lesson("tour"), progress=progress, process=True)
    r.start()
    try:
        assert r.wait_idle(60)
        state = r.lesson_state()
        assert state.lesson_id == "tour" and state.index == 0 and state.hints == []
        r.lesson_act("hint")
        assert r.wait_idle()
        assert len(r.lesson_state().hints) == 1
        r.lesson_act("next")
        assert r.wait_idle()
        assert r.lesson_state().index == 1
        assert any("step 2" in x.text for x in r.drain_replies())
    finally:
        r.close()
    # the tutor saved the learner's place from the child
    assert Progress(tmp_path / "p.json").of("tour").current == 1


def test_the_child_killed_mid_run_is_a_simulator_error(booted):
    r = ProcessRunner(Session(native_machine(arg=600)))     # a workload that outlasts the test
    r.start()
    try:
        assert r.wait_idle(30)
        r.run()
        wait_for(lambda: r.mode == RUNNING and r.stats.instructions > 0)
        os.kill(r.pid, signal.SIGKILL)
        assert r.wait_idle(10)
        assert r.mode == CRASHED and r.error == "its process ended (killed by SIGKILL)"
        assert not r.alive                            # the screen then says quit and start again, not reset
        assert any(x.kind == "err" and "simulator error" in x.text for x in r.drain_replies())
        r.command("regs")                             # nothing hangs: one clear line
        assert r.wait_idle(2)
        assert "has ended" in r.drain_replies()[-1].text
    finally:
        r.close(1.0)
    assert_gone(r.pid)


_ORPHAN = """
import os, sys
from lab.session import live
from lab.tui.sim_process import ProcessRunner
r = ProcessRunner(live.open_session([sys.argv[1]], record=sys.argv[2]))
r.start()
assert r.wait_idle(30)
print(r.pid, flush=True)
os._exit(0)          # the screen's process dies without closing its runner
"""


def test_the_child_quits_when_the_screen_process_dies(tmp_path):
    rec = tmp_path / "orphan.xlrec"
    out = subprocess.run([sys.executable, "-c", _ORPHAN, NATIVE, str(rec)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    pid = int(out.stdout.strip())

    def gone() -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return True
    wait_for(gone, timeout=10)
    # it went as quit goes: the recording is complete
    assert json.loads(rec.read_text().splitlines()[-1])["t"] == "end"


async def _until(pilot, cond, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError("timed out")


def test_the_screen_on_a_process_runner(booted):
    """A key that moves the focus to another pane, a command's output, and quitting: the
    child leaves no process behind."""
    from lab.tui.app import make_app

    async def go():
        runner = ProcessRunner(booted)
        app = make_app(theme=THEME, runner=runner)
        async with app.run_test(size=(200, 50)) as pilot:
            await settle(pilot, app)
            assert app.view is not None and app.view.cpu["label"] == "bare metal"
            before = app.main.focused_pane
            await pilot.press("ctrl+n")
            await pilot.pause()
            assert app.main.focused_pane is not before
            await command(pilot, app, "step 5")
            await command(pilot, app, "regs")
            assert "rflags" in output_text(app) and app.view.cpu["icount"] == 5
            # the child killed: a command says what to do, and it is not 'reset'
            os.kill(runner.pid, signal.SIGKILL)
            await _until(pilot, lambda: not runner.alive)
            await command(pilot, app, "regs")
            assert "the simulator stopped: its process ended (killed by SIGKILL); 'quit' the screen" \
                in output_text(app)
        return runner
    runner = run(go())
    assert_gone(runner.pid)


@pytest.mark.parametrize("busy", (True, False))
def test_a_key_holds_the_simulation_only_where_it_shares_its_core(monkeypatch, busy):
    """On a busy computer (the child gets less than CONTENDED of a core) the simulation gives
    way to the screen for a key until it has answered; with a core of its own it runs on."""
    from lab.tui import sim_process
    monkeypatch.setattr(sim_process, "CONTENDED", 2.0 if busy else 0.0)     # the fork copies it
    monkeypatch.setattr(sim_process, "SHARE_WINDOW", 0.05)
    r = ProcessRunner(Session(native_machine(arg=600)))
    r.start()
    try:
        assert r.wait_idle(30)
        r.run()
        wait_for(lambda: r.stats.sim_seconds > 0.2)      # it has measured its share
        assert r.contended is busy
        r.give_way(30.0)
        time.sleep(0.3)                                  # the slice under way ends, a batch comes
        held = r.stats.instructions
        time.sleep(0.3)
        assert (r.stats.instructions == held) is busy and r.mode == RUNNING
        r.resume()                                       # answered: on at once, not after the hold
        wait_for(lambda: r.stats.instructions > held, timeout=2.0)
        r.pause()
        assert r.wait_idle()
    finally:
        r.close()
