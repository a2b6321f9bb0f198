"""Every key of the screen, pressed as a learner presses it (with the prompt focused)."""

from __future__ import annotations

import pytest
from textual.command import CommandPalette
from textual.widgets import Input

from lab.tui.app import DARK, LIGHT
from lab.tui.runner import DEFAULT_SPEED, PAUSED, RUNNING, SPEEDS, STOPPED
from lab.tui.screens.help import HelpScreen
from lab.tui.widgets.eventlist import EventList
from tui_support import lab, message_text, output_text, run, settle


@pytest.mark.machine
def test_keys_work_while_the_prompt_has_focus():
    async def go():
        async with lab() as (app, pilot):
            assert isinstance(app.focused, Input)
            before = app.view.cpu["icount"]
            await pilot.press("f6")
            await settle(pilot, app)
            assert app.view.cpu["icount"] == before + 1
            assert app.main.cmd().value == ""          # nothing was typed into the prompt
    run(go())


@pytest.mark.machine
def test_f6_steps_one_instruction_each_press():
    async def go():
        async with lab() as (app, pilot):
            start = app.view.cpu["icount"]
            for k in range(3):
                await pilot.press("f6")
                await settle(pilot, app)
                assert app.view.cpu["icount"] == start + k + 1
            assert message_text(app).startswith("stepped 1:")
            assert app.runner.mode == PAUSED
    run(go())


@pytest.mark.machine
def test_f7_runs_to_the_next_event():
    async def go():
        async with lab() as (app, pilot):
            trace = app.runner.session.machine.trace
            seq = trace.seq
            await pilot.press("f7")
            await settle(pilot, app)
            assert trace.seq > seq                     # an event happened...
            assert "until any: reached" in output_text(app)
            assert f"#{seq}" in output_text(app)       # ...and it was the very next one
    run(go())


@pytest.mark.machine
def test_f8_runs_until_hypercall_or_vmexit_and_on_bare_metal_until_the_machine_stops():
    async def go():
        async with lab() as (app, pilot):
            await pilot.press("f8")
            await settle(pilot, app)
            assert app.runner.mode == STOPPED
            assert "until hypercall,vmexit: machine stopped" in output_text(app)
            assert "stopped" in app.view.vcpus[0].state
    run(go())


@pytest.mark.machine
def test_f5_runs_and_pauses_and_footer_shows_which():
    async def go():
        async with lab() as (app, pilot):
            for _ in range(len(SPEEDS)):
                await pilot.press("f3")                # slowest: one instruction per tick
            assert app.runner.speed == 0
            bindings = app.screen.active_bindings
            assert bindings["f5"].binding.action == "run"
            await pilot.press("f5")
            await pilot.pause(0.2)
            assert app.runner.mode == RUNNING
            await pilot.pause(0.1)
            assert app.screen.active_bindings["f5"].binding.action == "pause"
            await pilot.press("f5")
            await settle(pilot, app)
            assert app.runner.mode == PAUSED
            assert "run: paused after" in output_text(app)
    run(go())


@pytest.mark.machine
def test_f3_f4_change_speed():
    async def go():
        async with lab() as (app, pilot):
            assert app.runner.speed == DEFAULT_SPEED
            await pilot.press("f3")
            assert app.runner.speed == DEFAULT_SPEED - 1
            assert message_text(app) == f"speed: {SPEEDS[DEFAULT_SPEED - 1]:,} insn/tick"
            await pilot.press("f4", "f4")
            assert app.runner.speed == DEFAULT_SPEED   # full speed is the top
            assert message_text(app) == "speed: full speed"
    run(go())


@pytest.mark.machine
def test_time_keys_are_disabled_once_the_machine_stops():
    async def go():
        async with lab() as (app, pilot):
            await pilot.press("f5")
            await settle(pilot, app)
            assert app.runner.mode == STOPPED
            await pilot.pause(0.1)
            assert app.screen.active_bindings["f6"].enabled is False
            icount = app.view.cpu["icount"]
            await pilot.press("f6")
            await settle(pilot, app)
            assert app.view.cpu["icount"] == icount
    run(go())


@pytest.mark.machine
def test_f1_opens_help_and_escape_closes_it():
    async def go():
        async with lab() as (app, pilot):
            await pilot.press("f1")
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")
            await pilot.pause()
            assert app.screen is app.main
    run(go())


@pytest.mark.machine
def test_question_mark_opens_help_only_outside_the_prompt():
    async def go():
        async with lab() as (app, pilot):
            await pilot.press("question_mark")
            assert app.main.cmd().value == "?"         # typed, as any character at a prompt
            assert app.screen is app.main
            app.main.cmd().value = ""
            await pilot.press("f2")                    # to the panes
            assert not isinstance(app.focused, Input)
            await pilot.press("question_mark")
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("q")
            await pilot.pause()
            assert app.screen is app.main
    run(go())


@pytest.mark.machine
def test_f2_toggles_between_prompt_and_panes():
    async def go():
        async with lab() as (app, pilot):
            await pilot.press("f2")
            assert not isinstance(app.focused, Input)
            await pilot.press("f2")
            assert isinstance(app.focused, Input)
    run(go())


@pytest.mark.machine
def test_ctrl_n_cycles_the_tabs_on_a_small_screen():
    async def go():
        async with lab() as (app, pilot):
            assert app.main.layout_name == "narrow"
            seen = [app.main.active_pane]
            for _ in range(6):
                await pilot.press("ctrl+n")
                seen.append(app.main.active_pane)
            assert seen == ["cpu", "pages", "calls", "devio", "output", "domains", "cpu"]
            visible = [p.id for p in app.main.query(".pane") if p.display and p.region.area]
            assert visible == ["cpu"]
    run(go())


@pytest.mark.machine
def test_ctrl_n_moves_focus_between_panes_on_a_large_screen():
    async def go():
        async with lab(size=(200, 50)) as (app, pilot):
            assert app.main.layout_name == "wide"
            await pilot.press("ctrl+n")
            assert app.focused is app.main.query_one("#domains")
            await pilot.press("ctrl+n", "ctrl+n", "ctrl+n")
            assert isinstance(app.focused, EventList)
            assert app.main.query_one("#calls") in app.focused.ancestors
    run(go())


@pytest.mark.machine
def test_ctrl_t_switches_dark_and_light():
    async def go():
        async with lab() as (app, pilot):
            assert app.theme == DARK
            await pilot.press("ctrl+t")
            assert app.theme == LIGHT
            await pilot.press("ctrl+t")
            assert app.theme == DARK
    run(go())


@pytest.mark.machine
def test_ctrl_p_palette_runs_a_lab_command():
    async def go():
        async with lab() as (app, pilot):
            await pilot.press("ctrl+p")
            await pilot.pause()
            assert isinstance(app.screen, CommandPalette)
            await pilot.press(*"regs")
            await pilot.pause(0.5)
            await pilot.press("enter")
            await settle(pilot, app)
            assert app.screen is app.main
            assert "rflags" in output_text(app)
    run(go())


@pytest.mark.machine
def test_ctrl_p_palette_reaches_key_actions():
    async def go():
        async with lab() as (app, pilot):
            start = app.view.cpu["icount"]
            await pilot.press("ctrl+p")
            await pilot.pause()
            await pilot.press(*"Execute one instruction")
            await pilot.pause(0.5)
            await pilot.press("enter")
            await settle(pilot, app)
            assert app.view.cpu["icount"] == start + 1
    run(go())


def test_every_binding_has_an_id_and_a_tooltip():
    from lab.tui.app import XenLab
    from lab.tui.screens.help import HelpScreen as H
    from lab.tui.widgets.commandline import CommandLine
    from lab.tui.widgets.domains import DomainTree
    from lab.tui.widgets.logs import EventPane
    for owner in (XenLab, H, CommandLine, DomainTree, EventPane, EventList):
        for b in owner.BINDINGS:
            assert b.id, (owner.__name__, b.key)
            assert b.tooltip, (owner.__name__, b.key)


def test_help_file_names_every_key():
    from lab.tui.actions import ACTIONS
    from lab.tui.screens.help import help_text
    text = help_text()
    for a in ACTIONS:
        assert f"**{a.key.upper() if a.key.startswith('f') else a.key}**" in text, a.key
