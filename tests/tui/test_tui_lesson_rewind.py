"""On screen, r and R in the lesson panel take the machine back in time (on the simulation thread)."""

from __future__ import annotations

from lab.lessons.model import find_lesson
from lab.lessons.progress import Progress
from lab.tui.app import make_app
from lab.tui.widgets.lesson import LessonPanel
from tui_support import THEME, command, output_text, run, settle


async def _wait(pilot, cond, tries: int = 200) -> None:
    for _ in range(tries):
        if cond():
            return
        await pilot.pause(0.05)


def test_reset_and_restart_keys_rewind_the_machine(tmp_path):
    async def go():
        app = make_app(lesson=find_lesson("tour"), theme=THEME, progress=Progress(tmp_path / "p.json"))
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            await settle(pilot, app)
            await _wait(pilot, lambda: app.main.query(LessonPanel) and app.tutor is not None)
            session = app.runner.session
            start = session.clock()
            await command(pilot, app, "lesson next")
            await command(pilot, app, "step 40")
            await _wait(pilot, lambda: session.clock() != start)
            assert session.clock() != start
            await pilot.press("ctrl+g", "r")
            await _wait(pilot, lambda: "back where the step began" in output_text(app))
            assert "back where the step began" in output_text(app)
            assert session.clock() == start and app.tutor.index == 1
            await command(pilot, app, "step 40")
            await _wait(pilot, lambda: session.clock() != start)
            await pilot.press("ctrl+g", "R")
            await _wait(pilot, lambda: "back at the lesson's start" in output_text(app))
            assert app.runner.session is session and app.tutor.index == 0
            assert session.clock() == start and app.return_value is None
    run(go())


def test_a_lesson_on_screen_is_recorded_and_replays_exactly(tmp_path):
    """xenlab lesson ID records like any session: the rec marker, the lesson's setup and
    markers, its actions (a hint, a reset through time) and the learner's commands, in
    order; the file replays to the same machine, every digest matching."""
    import json

    from lab.session.replay import replay
    from tui_support import pane_text
    record = tmp_path / "lesson.jsonl"

    async def go():
        app = make_app(lesson=find_lesson("tour"), theme=THEME, progress=Progress(tmp_path / "p.json"),
                       record=record)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            await settle(pilot, app)
            await _wait(pilot, lambda: app.main.query(LessonPanel) and app.tutor is not None)
            await _wait(pilot, lambda: "● rec" in pane_text(app, "#status"))
            assert "● rec" in pane_text(app, "#status")
            session = app.runner.session
            await command(pilot, app, "lesson next")
            await command(pilot, app, "step 40")
            await pilot.press("ctrl+g", "h")
            await _wait(pilot, lambda: "hint 1/" in output_text(app))
            await pilot.press("r")
            await _wait(pilot, lambda: "back where the step began" in output_text(app))
            await command(pilot, app, "step 25")
            await settle(pilot, app)
            digest = session.machine.digest()
        return digest

    digest = run(go())
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    inputs = [(ln["kind"], ln["text"]) for ln in lines if ln.get("t") == "input"]
    marks = [ln["name"] for ln in lines if ln.get("t") == "mark"]
    lesson_inputs = [text for kind, text in inputs if kind == "lesson"]
    assert lesson_inputs == ["next", "hint", "reset"]
    assert ("command", "seek lesson-step-2") in inputs and ("command", "step 25") in inputs
    assert {"lesson-start", "lesson-step-1", "lesson-step-2", "lesson:hint", "lesson:reset"} <= set(marks)
    assert lines[-1]["t"] == "end"
    result = replay(record)
    assert result.divergence is None and result.recording.complete
    assert result.session.machine.digest() == digest
