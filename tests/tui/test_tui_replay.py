"""The replay screen: a recording on screen, its timeline and the keys that move along it;
and the live screen's recording."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from lab.paths import KERNELS
from lab.session.commands import execute
from lab.session.live import open_session
from lab.session.recorder import stop_recording
from lab.session.recording import load_recording
from lab.session.replay import replay
from lab.tui.replay_app import make_replay_app
from lab.tui.widgets.timeline import Timeline
from tui_support import THEME, command, lab, output_text, settle

SCRIPT = ["run 3000", "mark boot", "step 4", "run 2000", "mark later", "run 1000"]


def _recording(tmp_path: Path) -> Path:
    path = tmp_path / "demo.jsonl"
    session = open_session([str(KERNELS / "native.s")], record=path)
    for line in SCRIPT:
        execute(session, line)
    stop_recording(session)
    session.stop_watching()
    return path


def _app(tmp_path: Path):
    return make_replay_app(load_recording(_recording(tmp_path)), theme=THEME)


def test_timeline_keys_move_the_machine(tmp_path):
    async def go():
        app = _app(tmp_path)
        async with app.run_test(size=(120, 36)) as pilot:
            await settle(pilot, app)
            tm = app.runner.session.time_machine
            assert tm.now() == 0
            await pilot.press("ctrl+down")                 # next marker
            await settle(pilot, app)
            assert tm.now() == 3000
            await pilot.press("ctrl+down")
            await settle(pilot, app)
            assert tm.now() == 5004
            await pilot.press("ctrl+left")                 # one instruction back
            await settle(pilot, app)
            assert tm.now() == 5003
            await pilot.press("ctrl+right")
            await settle(pilot, app)
            assert tm.now() == 5004
            await pilot.press("ctrl+up")                   # previous marker
            await settle(pilot, app)
            assert tm.now() == 3000
            assert tm.position == (1, None)                # before "step 4"
            await pilot.press("shift+right")               # next input: after "step 4"
            await settle(pilot, app)
            assert tm.position == (2, None) and tm.now() == 3004
            await pilot.press("shift+left")
            await settle(pilot, app)
            assert tm.position == (1, None)
            machine = app.runner.session.machine
            seq = machine.trace.seq
            await pilot.press("shift+down")                # just after the next event
            await settle(pilot, app)
            machine = app.runner.session.machine
            assert machine.trace.seq > seq and tm.now() > 3000
            await pilot.press("shift+up")                  # back to just after the one before
            await settle(pilot, app)
            assert app.runner.session.machine.trace.seq <= seq + 1
            await pilot.press("ctrl+up")
            await settle(pilot, app)
            assert tm.now() == 3000
            app.update_timeline()
            timeline = app.main.query_one(Timeline)
            assert timeline.view is not None and timeline.view.now == tm.now()
            assert "markers: boot  later" in timeline._shown.plain
            bar = timeline._shown.plain.splitlines()[0]
            assert bar.count("▼") == 1 and bar.count("●") == 1      # 'boot' lies under the machine
            assert bar.index("●") < bar.index("▼")
            # the whole replay plays to the end
            await pilot.press("f10")
            for _ in range(200):
                await pilot.pause(0.05)
                if not app.playing:
                    break
            await settle(pilot, app)
            assert tm.live and tm.now() == 6004
    asyncio.run(go())


def test_branch_from_a_past_point(tmp_path):
    async def go():
        app = _app(tmp_path)
        async with app.run_test(size=(120, 36)) as pilot:
            await settle(pilot, app)
            await command(pilot, app, "seek boot")
            await command(pilot, app, "step 1")           # takes over: the future is gone
            tm = app.runner.session.time_machine
            assert tm.live and tm.now() == 3001 and tm.extent() == 3001
            assert "stepped 1" in output_text(app)
            # the new session is recorded, from its start
            await settle(pilot, app)
            rec = app.runner.session.recorder
            assert rec is not None and rec.active
            path = rec.path
        loaded = load_recording(path)
        # the marker 'boot' goes in where it was set, so a 'seek boot' in the recording replays
        assert [ln.obj["text"] for ln in loaded.inputs()][-3:] == ["run 3000", "mark boot", "step 1"]
    asyncio.run(go())


def test_live_screen_records_and_back_key(tmp_path):
    async def go():
        path = tmp_path / "live.jsonl"
        async with lab(size=(100, 30), record=path) as (app, pilot):
            await command(pilot, app, "run 2500")
            await pilot.press("ctrl+b")                    # back one instruction
            await settle(pilot, app)
            assert app.runner.session.time_machine.now() == 2499
            await command(pilot, app, "step 2")
            digest = app.runner.session.machine.digest()
            status = app.main.query_one("#status")._shown.plain
            assert "● rec" in status
        rec = load_recording(path)
        assert rec.complete
        # the screen runs run and step itself: a run is recorded as how far it went, steps as steps
        assert [(ln.obj["kind"], ln.obj["text"]) for ln in rec.inputs()] == [
            ("run", "2500"), ("command", "back 1"), ("command", "step 2")]
        result = replay(rec)
        assert result.divergence is None and result.session.machine.digest() == digest
    asyncio.run(go())


def test_the_mark_key_sets_numbered_bookmarks_that_are_recorded(tmp_path):
    async def go():
        path = tmp_path / "marks.jsonl"
        async with lab(size=(100, 30), record=path) as (app, pilot):
            await command(pilot, app, "run 1000")
            await pilot.press("ctrl+o")                    # m1 here
            await settle(pilot, app)
            await command(pilot, app, "step 5")
            await pilot.press("ctrl+o")                    # m2: m1 is taken
            await settle(pilot, app)
            tm = app.runner.session.time_machine
            assert {n: insns for n, (_, _, insns) in tm.markers.items()} == {"m1": 1000, "m2": 1005}
            await command(pilot, app, "seek m1")
            assert tm.now() == 1000
        rec = load_recording(path)
        assert [ln.obj["text"] for ln in rec.inputs()] == ["1000", "mark m1", "step 5", "mark m2", "seek m1"]
    asyncio.run(go())


@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
def test_replay_screen_snapshot(snap_compare, tmp_path, size):
    """The replay screen at a marker: panes as they were, the timeline with both markers."""
    async def run_before(pilot):
        await pilot.pause()
        app = pilot.app
        await settle(pilot, app)
        await pilot.press("ctrl+down")
        await settle(pilot, app)
        app.update_timeline()
        await pilot.pause()
    assert snap_compare(_app(tmp_path), terminal_size=size, run_before=run_before)


def test_t_on_a_logged_event_takes_the_machine_there(tmp_path):
    async def go():
        async with lab(size=(120, 36)) as (app, pilot):
            await command(pilot, app, "run 60000")
            tm = app.runner.session.time_machine
            end = tm.now()
            app.main.activate("calls")
            await pilot.pause()
            events = app.main.query_one("#calls EventList")
            events.focus()
            await pilot.press("home", "down", "down")
            ev = events.selected_event
            assert ev is not None
            await pilot.press("t")
            await settle(pilot, app)
            machine = app.runner.session.machine
            assert tm.now() < end
            assert machine.trace.seq > ev.seq                       # it has happened ...
            assert machine.trace.recent(1)[-1].seq >= ev.seq
            assert f"after event #{ev.seq}" in output_text(app)    # ... and the log starts again there
            assert events.row_count <= ev.seq + 5
    asyncio.run(go())


@pytest.mark.parametrize("speed", [4, 6])
def test_screen_runs_on_a_xen_host_replay_exactly(tmp_path, speed):
    """At a chosen speed (runs of 10,000 per tick) and at full speed (timed slices between vCPU
    runs), with a pause in the middle: the recording replays to the same state."""
    from lab.paths import MACHINES

    async def go():
        path = tmp_path / "xen.jsonl"
        async with lab(size=(100, 30), record=path, target=str(MACHINES / "default.toml"),
                       speed=speed) as (app, pilot):
            app.runner.run(45_000)
            await settle(pilot, app)
            await command(pilot, app, "xl list")
            app.runner.run(20_000)
            await pilot.pause(0.05)
            app.runner.pause()
            await settle(pilot, app)
            await command(pilot, app, "step 3")
            digest = app.runner.session.machine.digest()
        rec = load_recording(path)
        kinds = [ln.obj["kind"] for ln in rec.inputs()]
        assert kinds.count("run") >= 2
        runs = [ln.obj["text"] for ln in rec.inputs() if ln.obj["kind"] == "run"]
        if speed == 4:
            assert all(text.endswith(" by 10000") for text in runs), runs
        else:
            assert all(" by " not in text for text in runs), runs
        result = replay(rec)
        assert result.divergence is None, result.summary()
        assert result.session.machine.digest() == digest
    asyncio.run(go())
