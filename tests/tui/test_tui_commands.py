"""The command line: lab commands, the screen's own commands, history, completion, errors."""

from __future__ import annotations

import pytest
from textual.widgets import Static

from lab.tui.app import LIGHT, help_listing
from lab.tui.runner import PAUSED, RUNNING, SPEEDS, STOPPED
from lab.tui.widgets.logs import CallsPane, DevicePane
from tui_support import command, lab, message_text, output_text, run, settle


def test_every_screen_command_has_its_method_and_no_other():
    """The screen's table of its own commands and the registry's screen commands agree, and
    each method takes exactly the arguments the command's parser gives it."""
    import inspect

    from lab.session.commands import REGISTRY
    from lab.tui.app import XenLab
    screen = {name for name, cmd in REGISTRY.items() if cmd.screen}
    assert set(XenLab.SCREEN_COMMANDS) == screen
    examples = {"speed": "speed max", "filter": "filter calls kind trap", "theme": "theme dark",
                "lesson": "lesson hint", "answer": "answer 2"}
    from lab.session.commands import parse
    for name, method in XenLab.SCREEN_COMMANDS.items():
        call = parse(examples.get(name, name))
        params = list(inspect.signature(method).parameters)[1:]
        assert params == list(call.args), name


@pytest.mark.machine
def test_regs_prints_registers():
    async def go():
        async with lab() as (app, pilot):
            await command(pilot, app, "regs")
            out = output_text(app)
            assert "xen> regs" in out
            assert "rflags" in out and "cr3" in out
    run(go())


@pytest.mark.machine
def test_unknown_command_is_a_red_message_not_a_traceback():
    async def go():
        async with lab() as (app, pilot):
            await command(pilot, app, "frobnicate 3")
            assert "unknown command 'frobnicate'" in message_text(app)
            assert app.main.query_one("#message", Static).has_class("-error")
            assert ("err", "unknown command 'frobnicate' (try 'help')") in app.transcript
            assert "Traceback" not in output_text(app)
            await command(pilot, app, "regs")          # the next good command clears the red
            assert not app.main.query_one("#message", Static).has_class("-error")
    run(go())


@pytest.mark.machine
def test_bad_arguments_and_quotes_are_messages():
    async def go():
        async with lab() as (app, pilot):
            for line, expect in (("step zero", "the count must be a number"),
                                 ("run -3", "the count must be at least 1"),
                                 ("until", "until needs an event"),
                                 ("until nonsense", "unknown event kind 'nonsense'"),
                                 ("walk banana", "the address must be a number"),
                                 ("echo 'unterminated", "cannot parse the command"),
                                 ("focus 7", "no domain or vCPU '7'"),
                                 ("theme nosuch", "no theme 'nosuch'"),
                                 ("filter kind ioport", "this log shows"),
                                 ("speed fast", "the count must be a number")):
                await command(pilot, app, line)
                assert expect in message_text(app), line
            assert app.runner.mode == PAUSED
    run(go())


@pytest.mark.machine
def test_step_n_and_run_n():
    async def go():
        async with lab() as (app, pilot):
            await command(pilot, app, "step 5")
            assert app.view.cpu["icount"] == 5
            await command(pilot, app, "run 1000")
            assert app.view.cpu["icount"] == 1005
            assert "run 1,000: done after 1,000 instructions" in output_text(app)
            await command(pilot, app, "step 200")    # a long step runs on the sim thread in slices
            assert app.view.cpu["icount"] == 1205
    run(go())


@pytest.mark.machine
def test_until_matches_the_headless_command():
    from lab.session.build import native_machine
    from lab.session.commands import execute
    from lab.session.session import Session
    headless = Session(native_machine())
    expected = execute(headless, "until trap:#PF").splitlines()[0]

    async def go():
        async with lab() as (app, pilot):
            await command(pilot, app, "until trap:#PF")
            assert expected in output_text(app)
            assert app.view.cpu["icount"] == headless.machine.cpu.icount
            assert app.view.cpu["rip"] == headless.machine.cpu.rip
    run(go())


@pytest.mark.machine
def test_break_stops_a_run():
    async def go():
        async with lab() as (app, pilot):
            await command(pilot, app, "break syscall")
            assert "breakpoint 0: syscall" in output_text(app)
            await command(pilot, app, "run")
            assert app.runner.mode == PAUSED
            assert "run: breakpoint after" in output_text(app)
            assert app.view.breakpoints == ("syscall",)
            await command(pilot, app, "break clear")
            await command(pilot, app, "run")
            assert app.runner.mode == STOPPED
    run(go())


@pytest.mark.machine
def test_walk_pins_an_address_in_the_page_table_pane():
    async def go():
        async with lab() as (app, pilot):
            await command(pilot, app, "until trap:#PF")
            await command(pilot, app, "walk 0x400000")
            assert app.view.walk_requested == 0x400000
            assert app.main.active_pane == "pages"          # a small screen shows the walk
            from tui_support import pane_text
            text = pane_text(app, "#pages-walk")
            assert "walk 0x400000 (pinned address)" in text
            assert "L4 PML4 table" in text and "memory references" in text
            await command(pilot, app, "walk")
            assert app.view.walk_requested is None
            assert "(rip)" in pane_text(app, "#pages-walk")
    run(go())


@pytest.mark.machine
def test_focus_command_and_events_command():
    async def go():
        async with lab() as (app, pilot):
            await command(pilot, app, "focus 0")
            assert "focus: bare metal vcpu 0" in output_text(app)
            await command(pilot, app, "until syscall")
            await command(pilot, app, "events 3")
            assert "syscall" in output_text(app).split("xen> events 3")[-1]
    run(go())


@pytest.mark.machine
def test_pause_and_speed_commands():
    async def go():
        async with lab() as (app, pilot):
            await command(pilot, app, "speed 1")
            assert app.runner.speed == 0
            assert "speed: 1 insn/tick" in output_text(app)
            cmd = app.main.cmd()
            cmd.value = "run"
            await pilot.press("enter")
            await pilot.pause(0.2)
            assert app.runner.mode == RUNNING
            cmd.value = "pause"
            await pilot.press("enter")
            await settle(pilot, app)
            assert app.runner.mode == PAUSED
            await command(pilot, app, "speed max")
            assert SPEEDS[app.runner.speed] is None
            await command(pilot, app, "speed slower")
            assert app.runner.speed == len(SPEEDS) - 2
            await command(pilot, app, "speed faster")
            await command(pilot, app, "speed")
            assert output_text(app).endswith("speed: full speed")
    run(go())


@pytest.mark.machine
def test_filter_command_narrows_the_logs():
    async def go():
        async with lab() as (app, pilot):
            await command(pilot, app, "until trap:#PF")
            calls = app.main.query_one(CallsPane)
            assert {ev.kind for ev in calls.list.events} >= {"syscall", "sysret", "trap"}
            await command(pilot, app, "filter kind trap")
            assert {ev.kind for ev in calls.list.events} == {"trap"}
            await command(pilot, app, "filter domain 3")
            assert calls.list.events == []
            await command(pilot, app, "filter clear")
            assert len({ev.kind for ev in calls.list.events}) >= 3
            await command(pilot, app, "filter io kind ioport")
            devio = app.main.query_one(DevicePane)
            assert devio.filter.kind == "ioport" and devio.list.events
            assert "kind ioport" in message_text(app)
    run(go())


@pytest.mark.machine
def test_theme_clear_help_and_quit():
    async def go():
        async with lab() as (app, pilot):
            await command(pilot, app, "theme light")
            assert app.theme == LIGHT
            await command(pilot, app, "help")
            out = output_text(app)
            assert "until KIND[:NAME]" in out and "filter [calls|io]" in out
            await command(pilot, app, "help walk")
            assert "walk [ADDR]" in output_text(app)
            await command(pilot, app, "clear")
            assert output_text(app) == ""
            app.main.cmd().value = "quit"
            await pilot.press("enter")
            await pilot.pause()
            assert app._exit
    run(go())


@pytest.mark.machine
def test_history_walks_with_up_and_down():
    async def go():
        async with lab() as (app, pilot):
            await command(pilot, app, "regs")
            await command(pilot, app, "source")
            cmd = app.main.cmd()
            cmd.value = "draft"
            await pilot.press("up")
            assert cmd.value == "source"
            await pilot.press("up")
            assert cmd.value == "regs"
            await pilot.press("up")
            assert cmd.value == "regs"
            await pilot.press("down", "down")
            assert cmd.value == "draft"
    run(go())


@pytest.mark.machine
def test_completion_of_command_names_and_event_kinds():
    async def go():
        async with lab() as (app, pilot):
            cmd = app.main.cmd()
            cmd.focus()
            await pilot.press(*"unt")
            await pilot.pause(0.2)
            await pilot.press("tab")
            assert cmd.value == "until "
            await pilot.press(*"hyp")
            await pilot.pause(0.2)
            await pilot.press("tab")
            assert cmd.value == "until hypercall"           # no space inside KIND:NAME
            await pilot.press(*":mmu_u")
            await pilot.pause(0.2)
            await pilot.press("tab")
            assert cmd.value == "until hypercall:mmu_update"
            cmd.value = ""
            await pilot.press(*"fil")
            await pilot.pause(0.2)
            await pilot.press("right")          # right also accepts, as in any Textual Input
            assert cmd.value == "filter"
    run(go())


def test_help_lists_every_command_and_every_usage_in_it_parses():
    """Help comes from the one registry: each usage line, with its placeholders filled in,
    is accepted by the same parser the command line uses."""
    from lab.session.commands import REGISTRY, parse
    text = help_listing()
    examples = {"N": "3", "ADDR": "0x1000", "KIND[:NAME]": "trap:#PF", "KIND[:NAME][@DOM]": "trap:#PF@1",
                "DOM": "1", "DOM[.VCPU]": "1.0",
                "PATH": "default", "COMMAND": "list", "TEXT...": "hello", "PATH...": "/local"}
    for cmd in REGISTRY.values():
        assert cmd.usage in text, cmd.name
        words = [w for w in cmd.usage.split()[1:] if not w.startswith("[")]
        line = " ".join([cmd.name] + [examples.get(w, w) for w in words if w not in ("|",)])
        specials = {"break": "break trap:#PF", "filter": "filter io kind ioport",
                    "xenstore-write": "xenstore-write /a b", "compare": "compare --modes pv,hvm",
                    "xl": "xl list", "console": "console 1 hello", "back": "back event", "seek": "seek #42",
                    "record": "record save x.jsonl", "lesson": "lesson goto 2", "answer": "answer 1"}
        line = specials.get(cmd.name, line)
        assert parse(line).command is cmd, line


def test_every_key_in_help_is_bound():
    from lab.tui.app import XenLab, key_names
    bound = {b.key for b in XenLab.BINDINGS}
    text = help_listing()
    for key, label in key_names():
        assert f"{key} {label}" in text
        if key not in ("ctrl+p", "?"):
            assert key.lower() in bound, key
    assert "question_mark" in bound


def test_compare_runs_in_a_worker_with_progress():
    async def go():
        async with lab() as (app, pilot):
            shown = []
            original = app.main.show_message
            app.main.show_message = lambda text, kind="info": (shown.append(text), original(text, kind))
            await command(pilot, app, "compare --modes native,pv")
            await app.workers.wait_for_complete()
            await settle(pilot, app)
            assert any("mode 1 of 2: native" in t for t in shown)
            assert any("mode 2 of 2: pv" in t for t in shown)
            out = output_text(app).split("xen> compare --modes native,pv")[-1]
            assert "guest instructions" in out and "native" in out and "pv" in out
            assert app.runner.mode == PAUSED and app.view.cpu["icount"] == 0   # the lab's machine untouched
    run(go())


@pytest.mark.machine
def test_the_command_line_completes_the_machines_domains():
    from lab.paths import MACHINES

    async def go():
        async with lab(size=(120, 40), target=str(MACHINES / "default.toml")) as (app, pilot):
            suggester = app.main.cmd().suggester
            assert await suggester.get_suggestion("until trap@pv-g") == "until trap@pv-guest"
            assert await suggester.get_suggestion("until trap@hvm") == "until trap@hvm-guest"
    run(go())
