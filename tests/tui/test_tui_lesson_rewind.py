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
