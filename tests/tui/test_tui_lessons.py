"""The lesson panel and the picker: keys, the check shown live, and screenshots at 80x24 and 200x50."""

from __future__ import annotations

from pathlib import Path

from lab.lessons.model import find_lesson
from lab.lessons.progress import Progress
from lab.tui.app import make_app
from lab.tui.screens.lessons import LessonPicker
from lab.tui.widgets.lesson import LessonPanel
from tui_support import THEME, command, message_text, output_text, run, settle

APP = "lesson_snapshot_app.py"


async def _ready(pilot):
    await pilot.pause()
    app = pilot.app
    await settle(pilot, app)
    for _ in range(100):
        if app.main.query(LessonPanel) and app.main.query_one(LessonPanel).state is not None:
            break
        await pilot.pause(0.05)


def _app(tmp_path: Path):
    return make_app(lesson=find_lesson("tour"), theme=THEME, progress=Progress(tmp_path / "p.json"))


def test_panel_keys_climb_the_hints_show_the_solution_and_move_between_steps(tmp_path):
    async def go():
        app = _app(tmp_path)
        async with app.run_test(size=(120, 40)) as pilot:
            await _ready(pilot)
            panel = app.main.query_one(LessonPanel)
            assert panel.state.index == 0 and not panel.state.met
            await pilot.press("ctrl+g")
            assert panel.has_focus
            await pilot.press("h")
            await pilot.pause()
            assert panel.state.hints == [app.tutor.lesson.steps[0].hints[0]]
            await pilot.press("h", "s")
            await pilot.pause()
            assert len(panel.state.hints) == 2 and panel.state.solution == ["xl list", "answer 3"]
            await pilot.press("n")
            await pilot.pause()
            assert panel.state.index == 1 and panel.state.hints == []
            await pilot.press("p")
            await pilot.pause()
            assert panel.state.index == 0
            await pilot.press("a")                               # answer: the prompt, prefilled
            await pilot.pause()
            assert app.main.cmd().has_focus and app.main.cmd().value == "answer "
    run(go())


def test_the_check_turns_met_as_the_learner_works(tmp_path):
    async def go():
        app = _app(tmp_path)
        async with app.run_test(size=(120, 40)) as pilot:
            await _ready(pilot)
            await command(pilot, app, "xl list")
            await pilot.pause(0.2)
            panel = app.main.query_one(LessonPanel)
            assert not panel.state.met and "answer the question" in panel.state.missing
            # shown as progress (the objective is met), not as a failure
            assert panel.state.awaiting_answer
            check = str(app.main.query_one("#lesson-check").render())
            assert check.startswith("◐ objective met") and "not yet" not in check
            await command(pilot, app, "answer 2")
            assert "not 2" in output_text(app)
            await command(pilot, app, "answer 3")
            await pilot.pause(0.2)
            assert panel.state.met and panel.state.done_steps == frozenset({0})
            assert Progress(tmp_path / "p.json").of("tour").steps_done == {0}
            await command(pilot, app, "lesson next")
            await pilot.pause(0.2)
            assert panel.state.index == 1
            await command(pilot, app, "lesson jump")
            assert "unknown lesson action 'jump'" in output_text(app)
    run(go())


def test_the_picker_lists_the_course_and_opens_the_chosen_lesson(tmp_path):
    async def go():
        app = _app(tmp_path)
        async with app.run_test(size=(100, 30)) as pilot:
            await _ready(pilot)
            await pilot.press("ctrl+l")
            await pilot.pause()
            assert isinstance(app.screen, LessonPicker)
            assert len(app.screen.lessons) >= 12
            from textual.widgets import OptionList
            first = app.screen.query_one(OptionList).get_option_at_index(1)
            assert "[new]" in str(first.prompt)                # a status, never read as markup
            await pilot.press("down", "enter")
            await pilot.pause()
        assert app.return_value == ("lesson", "rings")       # the command line opens it on a fresh machine
    run(go())


def test_plain_xenlab_tells_a_new_learner_where_to_start(tmp_path):
    async def go():
        from lab.paths import KERNELS
        app = make_app(str(KERNELS / "native.s"), theme=THEME, progress=Progress(tmp_path / "none.json"),
                       first_run_hint=True)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot, app)
            assert "new here? press ctrl+l for the lessons" in message_text(app)
    run(go())


def test_lesson_panel_small_screen(snap_compare):
    """80x24: the panel below the tabbed panes."""
    assert snap_compare(APP, terminal_size=(80, 24), run_before=_ready)


def test_lesson_panel_large_screen_with_hints(snap_compare):
    """200x50: the panel beside the grid, with a hint shown and the check not yet met."""
    async def run_before(pilot):
        await _ready(pilot)
        await command(pilot, pilot.app, "xl info")
        await pilot.press("ctrl+g", "h")
        await pilot.pause(0.2)
    assert snap_compare(APP, terminal_size=(200, 50), run_before=run_before)


def test_at_80x24_the_lesson_panel_leaves_the_command_line_and_the_footer_in_view(tmp_path):
    async def go():
        app = _app(tmp_path)
        async with app.run_test(size=(80, 24)) as pilot:
            await _ready(pilot)
            panel = app.main.query_one(LessonPanel).region
            assert panel.area
            for sel in ("#cmd", "#status", "KeyFooter"):
                region = app.main.query_one(sel).region
                assert app.main.region.contains_region(region) and not panel.overlaps(region), sel
    run(go())
