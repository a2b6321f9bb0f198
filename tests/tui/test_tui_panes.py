"""The panes: what they show, selection, mouse, layouts, and failures shown as messages."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from textual.widgets import Tab, Tabs
from textual.widgets._tabs import Underline

from lab.errors import UserError
from lab.tui.explain import event_row
from lab.tui.runner import CRASHED, NO_MACHINE, PAUSED
from lab.tui.widgets.domains import DomainTree
from lab.tui.widgets.eventlist import EventList
from lab.tui.widgets.logs import CallsPane, DevicePane
from tui_support import command, lab, message_text, output_text, pane_text, run, settle


@pytest.mark.machine
def test_cpu_pane_shows_rings_registers_and_source():
    async def go():
        async with lab(size=(120, 40)) as (app, pilot):
            await command(pilot, app, "until trap:#PF")
            rings = pane_text(app, "#cpu-rings")
            assert "root" in rings and "non-root" in rings
            row0 = rings.splitlines()[1]
            assert row0.split()[0] == "0" and "▶ bare metal" in row0      # ring 0 root
            summary = pane_text(app, "#cpu-summary")
            assert "ring 0 root" in summary and "insn 9," in summary        # after the disk driver's set-up
            regs = pane_text(app, "#cpu-regs")
            assert "rflags" in regs and "cr3" in regs and "IOPL=0" in regs
            source = pane_text(app, "#cpu-source")
            assert "machines/kernels/" in source and "▶" in source
            # Registers changed by the last refresh are styled apart from the others.
            regs_widget = app.main.query_one("#cpu-regs")
            assert any("warning" in str(span.style) for span in regs_widget._shown.spans)
    run(go())


@pytest.mark.machine
def test_cpu_pane_marks_user_mode_in_ring_3():
    async def go():
        async with lab() as (app, pilot):
            await command(pilot, app, "until sysret")
            await command(pilot, app, "step")
            rings = pane_text(app, "#cpu-rings").splitlines()
            assert "▶ bare metal" in rings[4]          # the ring 3 row
            assert "ring 3 root" in pane_text(app, "#cpu-summary")
    run(go())


@pytest.mark.machine
def test_domains_tree_lists_vcpus_and_selecting_one_focuses_it():
    messages: list = []

    async def go():
        async with lab(size=(120, 40), messages=messages) as (app, pilot):
            app.main.activate("domains")
            await pilot.pause()
            tree = app.main.query_one(DomainTree)
            leaves = [n for n in tree.root.children[0].children]
            assert len(leaves) == 1 and "cpu0" in str(leaves[0].label)
            assert "ring 0 root" in str(leaves[0].label)
            tree.focus()
            tree.move_cursor(leaves[0])
            await pilot.press("enter")
            await settle(pilot, app)
            assert any(isinstance(m, DomainTree.FocusRequested) and m.spec == "0.0" for m in messages)
            assert "focus: bare metal vcpu 0" in output_text(app)
    run(go())


@pytest.mark.machine
def test_selecting_a_trap_explains_it_and_names_its_source_line():
    messages: list = []

    async def go():
        async with lab(size=(120, 40), messages=messages) as (app, pilot):
            await command(pilot, app, "until trap:#PF")
            app.main.activate("calls")
            await pilot.pause()
            lst = app.main.query_one(CallsPane).list
            lst.focus()
            await pilot.press("end")
            await pilot.pause()
            assert lst.selected_event.kind == "trap"
            detail = pane_text(app, "#calls .log-detail-text")
            assert "page fault" in detail and "CR2" in detail
            assert "caused by machines/programs/workload.s:" in detail
            assert any(isinstance(m, EventList.Selected) for m in messages)
            await pilot.press("up")
            await pilot.pause()
            assert lst.selected_event.kind == "sysret"        # the kernel returning to the program
            assert "sysretq: ring 0 -> ring 3" in pane_text(app, "#calls .log-detail-text")
    run(go())


@pytest.mark.machine
def test_log_filter_keys_k_and_d():
    async def go():
        async with lab(size=(120, 40)) as (app, pilot):
            await command(pilot, app, "until trap:#PF")
            app.main.activate("calls")
            pane = app.main.query_one(CallsPane)
            pane.list.focus()
            await pilot.press("k")
            assert pane.filter.kind == "hypercall" and pane.list.events == []
            await pilot.press("k", "k")
            assert pane.filter.kind == "trap"
            assert {e.kind for e in pane.list.events} == {"trap"}
            assert str(pane.border_title).endswith("(kind trap · domain all)")    # the title says it
            await pilot.press("d")
            assert pane.filter.dom is None               # bare metal: no domain
            assert {e.kind for e in pane.list.events} == {"trap"}
            await pilot.press("d")
            assert pane.filter.dom == "all"
            await pilot.press("k", "k", "k", "k")        # back to every kind
            assert "(" not in str(pane.border_title)
            shown = len(pane.list.events)
            await pilot.press("x")                       # a stray x asks first ...
            assert len(pane.list.events) == shown and "x again clears it" in pane_text(app, "#calls .log-filter")
            await pilot.press("down")                    # ... and any other key keeps the log
            assert not pane.clear_armed and len(pane.list.events) == shown
            await pilot.press("x", "x")
            assert pane.list.events == []
    run(go())


@pytest.mark.machine
def test_clicking_a_tab_and_an_event_row():
    async def go():
        async with lab(size=(100, 30)) as (app, pilot):
            await command(pilot, app, "until trap:#PF")
            await pilot.pause()
            await pilot.click("#tab-devio")
            await pilot.pause()
            assert app.main.active_pane == "devio"
            lst = app.main.query_one(DevicePane).list
            await pilot.click(lst, offset=(5, 1))
            await pilot.pause()
            assert lst.selected_event is not None and lst.selected_event.kind == "ioport"
            assert "0xe9" in pane_text(app, "#devio .log-detail-text")
    run(go())


def test_the_tab_underline_moves_in_the_frame_that_shows_the_pane():
    async def go():
        async with lab(size=(120, 40)) as (app, pilot):
            await pilot.pause()
            underline = app.main.query_one(Underline)
            for pid in ("devio", "output", "calls"):
                app.main.activate(pid)                       # no refresh in between
                tab = app.main.query_one(f"#tab-{pid}", Tab)
                start, end = tab.virtual_region.shrink(tab.styles.gutter).column_span
                assert (underline.highlight_start, underline.highlight_end) == (start, end)
    run(go())


@pytest.mark.machine
def test_device_pane_shows_port_io_and_the_console():
    async def go():
        async with lab(size=(120, 40)) as (app, pilot):
            await command(pilot, app, "run")
            pane = app.main.query_one(DevicePane)
            assert pane.list.events and all(e.kind in pane.KINDS for e in pane.list.events)
            app.main.activate("devio")
            await pilot.pause()
            assert "xenlab kernel" in pane.console_text
            assert "checksum" in pane.console_text
    run(go())


@pytest.mark.machine
def test_a_pane_out_of_sight_is_drawn_from_the_latest_state_when_it_comes_back():
    async def go():
        async with lab(size=(80, 24)) as (app, pilot):       # narrow: one pane at a time
            app.main.activate("pages")
            await pilot.pause()
            before = pane_text(app, "#cpu-summary")
            await command(pilot, app, "step 3")
            assert pane_text(app, "#cpu-summary") == before  # behind its tab: not drawn
            app.main.activate("cpu")
            assert pane_text(app, "#cpu-summary") != before  # drawn as it comes into sight
            await pilot.resize_terminal(120, 40)             # medium: the hypercall log in the slot
            await pilot.pause()
            await command(pilot, app, "run")
            pane = app.main.query_one(DevicePane)
            assert pane.console_text == ""
            app.main.activate("devio")
            assert "checksum" in pane.console_text
    run(go())


@pytest.mark.machine
def test_a_log_out_of_sight_formats_no_row_until_it_comes_back():
    async def go():
        async with lab(size=(80, 24)) as (app, pilot):       # narrow: the hypercall log behind a tab
            app.main.activate("cpu")
            await pilot.pause()
            await command(pilot, app, "until trap:#PF")
            lst = app.main.query_one(CallsPane).list
            assert lst.events and lst.behind == len(lst.events)
            assert all(text is None for _, text in lst._rows)      # kept as events only
            app.main.activate("calls")                             # measured as it comes into sight
            assert lst.behind == 0
            rows = [event_row(ev, lst.xen) for ev in lst.events]
            assert lst.virtual_size.width == max(map(len, rows)) + 1
            await pilot.pause()
            newest = lst.render_line(len(rows) - 1 - lst.scroll_offset.y).text   # in view
            assert newest.strip() and rows[-1].startswith(newest.rstrip())
    run(go())


@pytest.mark.machine
def test_page_table_pane_and_tlb_follow_the_focused_cpu():
    async def go():
        async with lab(size=(120, 40)) as (app, pilot):
            await command(pilot, app, "until trap:#PF")
            walk = pane_text(app, "#pages-walk")
            assert f"walk {app.view.cpu['rip']:#x} (rip)" in walk
            tlb = pane_text(app, "#pages-tlb")
            entries = app.runner.session.focus.cpu.tlb.entries()
            assert f"{len(entries)} entries" in tlb
            for e in entries:
                assert e.describe() in tlb
    run(go())


@pytest.mark.machine
def test_walk_before_paging_is_a_note():
    async def go():
        async with lab(size=(120, 40)) as (app, pilot):
            assert "paging is off" in pane_text(app, "#pages-walk")
    run(go())


def _regions(app):
    return {p.id: p.region for p in app.main.query(".pane") if p.display and p.region.area}


@pytest.mark.machine
def test_layouts_adapt_and_nothing_overlaps():
    async def go():
        async with lab(size=(80, 24)) as (app, pilot):
            assert app.main.layout_name == "narrow"
            assert list(_regions(app)) == ["cpu"]
            assert app.main.query_one(Tabs).display
            for size, name, count in (((120, 40), "medium", 4), ((200, 50), "wide", 6), ((80, 24), "narrow", 1)):
                await pilot.resize_terminal(*size)
                await pilot.pause(0.1)
                assert app.main.layout_name == name
                regions = _regions(app)
                assert len(regions) == count, regions
                screen = app.main.region
                items = list(regions.values())
                for i, a in enumerate(items):
                    assert screen.contains_region(a)
                    for b in items[i + 1:]:
                        assert not a.overlaps(b)
            # The command line, status bar and footer stay on screen.
            for sel in ("#cmd", "#status", "KeyFooter"):
                assert app.main.region.contains_region(app.main.query_one(sel).region)
    run(go())


def test_a_bad_kernel_file_is_a_message():
    async def go():
        async with lab(target="no/such/kernel.s") as (app, pilot):
            assert app.runner.mode == NO_MACHINE
            assert "no such file" in message_text(app)
            await command(pilot, app, "regs")
            assert "no machine is loaded" in message_text(app)
            await pilot.press("f6")                     # disabled, harmless
            await pilot.pause()
    run(go())


@pytest.mark.machine
def test_a_simulator_failure_is_shown_not_raised():
    from lab.session.build import native_machine
    from lab.session.session import Session

    session = Session(native_machine())

    def broken(n=None):
        raise RuntimeError("decoder fell over")
    session.run = broken

    async def go():
        async with lab(session=session) as (app, pilot):
            await pilot.press("f5")
            await settle(pilot, app)
            assert app.runner.mode == CRASHED
            assert "simulator error: RuntimeError: decoder fell over" in message_text(app)
            await command(pilot, app, "regs")
            assert "internal error" in message_text(app) and "'reset' starts the machine again" in message_text(app)
    run(go())


@pytest.mark.machine
def test_a_user_error_from_the_session_is_a_message():
    from lab.session.build import native_machine
    from lab.session.session import Session

    session = Session(native_machine())

    def refuse(spec):
        raise UserError("no domain or vCPU 'x'")
    session.set_focus = refuse

    async def go():
        async with lab(session=session) as (app, pilot):
            app.post_message(DomainTree.FocusRequested("x"))
            await settle(pilot, app)
            assert "no domain or vCPU 'x'" in message_text(app)
    run(go())


@pytest.mark.machine
def test_the_sim_thread_never_touches_widgets(monkeypatch):
    from textual.widget import Widget
    main_thread = threading.get_ident()
    offenders: list[str] = []
    real = Widget.refresh

    def refresh(self, *a, **k):
        if threading.get_ident() != main_thread:
            offenders.append(type(self).__name__)
        return real(self, *a, **k)
    monkeypatch.setattr(Widget, "refresh", refresh)

    async def go():
        async with lab(size=(200, 50)) as (app, pilot):
            await command(pilot, app, "run")
            await command(pilot, app, "regs")
    run(go())
    assert offenders == []


@pytest.mark.machine
def test_a_xen_scenario_shows_domains_rings_and_hypercalls():
    from lab.paths import MACHINES
    from lab.tui.launch import build_session
    session = build_session(str(MACHINES / "default.toml"))

    async def go():
        async with lab(size=(200, 50), session=session) as (app, pilot):
            await command(pilot, app, "run 100000")
            doms = {v.dom for v in app.view.vcpus}
            assert len(doms) >= 2 and None not in doms
            rings = pane_text(app, "#cpu-rings")
            assert "Xen" in rings.splitlines()[1]                  # Xen owns ring 0 root
            calls = app.main.query_one(CallsPane)
            kinds = {e.kind for e in calls.list.events}
            assert {"hypercall", "vmexit"} <= kinds                # the PV and the HVM guest at work
            other = next(v for v in app.view.vcpus if not v.focused)
            await command(pilot, app, f"focus {other.spec}")
            assert app.view.cpu["dom"] == other.dom
            assert next(v for v in app.view.vcpus if v.focused).dom == other.dom
            calls.list.focus()
            await pilot.press("d")                                  # one domain at a time
            assert len({e.dom for e in calls.list.events}) <= 1
    run(go())


def test_an_internal_error_in_a_command_leaves_the_machine_usable(monkeypatch):
    from dataclasses import replace

    from lab.session.commands import REGISTRY

    def broken(session):
        raise TypeError("'VcpuRef' object is not callable")
    monkeypatch.setitem(REGISTRY, "regs", replace(REGISTRY["regs"], run=broken))

    async def go():
        async with lab() as (app, pilot):
            await command(pilot, app, "regs")
            assert "regs: internal error in the lab (TypeError" in message_text(app)
            assert app.runner.mode == PAUSED
            await command(pilot, app, "step 3")
            assert app.view.cpu["icount"] == 3
    run(go())


def test_f1_opens_help_on_the_focused_pane_with_its_keys():
    from lab.tui.screens.help import HelpScreen

    async def go():
        async with lab(size=(120, 40)) as (app, pilot):
            await command(pilot, app, "until trap:#PF")
            app.main.query_one(CallsPane).list.focus()
            await pilot.pause()
            await pilot.press("f1")
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            topic = app.screen.topic
            assert topic.startswith("## This pane: Hypercalls")
            assert "hypercalls, VM exits, traps" in topic
            assert "**k** Kind" in topic and "**x** Clear" in topic
            await pilot.press("escape")
            app.main.cmd().focus()
            await pilot.pause()
            await pilot.press("f1")
            await pilot.pause()
            assert app.screen.topic == ""               # from the prompt: the whole page
    run(go())


def test_every_command_in_the_help_page_parses():
    """help.md's command table and the program agree: each command written there parses."""
    import re

    from lab.session.commands import parse
    from lab.tui.screens.help import help_text
    text = help_text()
    table = text.split("## Commands", 1)[1].strip().split("\n\n", 1)[0]
    fill = {"N": "3", "ADDR": "0x1000", "KIND[:NAME]": "trap:#PF", "DOM": "1", "NAME": "pv-guest",
            "CFG": "machines/pv-guest.cfg", "M1,M2...": "native,pv", "PATH": "default", "TEXT": "hi",
            "KIND": "trap", "COMMAND": "step", "DOM[.VCPU]": "1.0"}
    spans = [cell for row in table.splitlines()[2:] for cell in re.findall(r"`([^`]+)`", row.split("|")[1])]
    assert len(spans) > 25
    for span in spans:
        line = re.sub(r"\[[^\]]*\]", lambda m: "" if "|" in m.group(0) or " " in m.group(0) else m.group(0), span)
        words = [fill.get(w, w) for w in line.replace("\\|", "|").split()]
        words = [w for w in words if not w.startswith("[")]
        assert parse(" ".join(words)) is not None, span


@pytest.mark.machine
def test_a_stop_whose_event_has_not_reached_its_log_is_selected_when_it_arrives():
    # On a loaded machine the runner can report a stop a tick before the log holds its event.
    async def go():
        async with lab(size=(120, 40)) as (app, pilot):
            await command(pilot, app, "until trap:#PF")
            lst = app.main.query_one(CallsPane).list
            stop = lst.selected_event
            assert stop is not None and stop.kind == "trap"
            earlier = [e for e in lst.events if e.seq < stop.seq]
            lst.clear()
            lst.add(earlier)
            assert app.show_stop(stop) is False                 # not in the log yet: look again
            lst.add([stop])
            assert app.show_stop(stop) is True
            assert lst.selected_event.seq == stop.seq
            lst.clear()
            lst.add(earlier + [replace(stop, seq=stop.seq + 1)])
            assert app.show_stop(stop) is True                  # a later event came: it never will
    run(go())


@pytest.mark.machine
def test_a_short_cpu_pane_keeps_the_line_about_to_run_in_view():
    """80x24 on the Xen scenario: the CPU tab is taller than the screen, and the source line
    marked as about to run is scrolled into view, at boot and after each step."""
    from lab.paths import MACHINES
    from lab.tui.widgets.cpu import CpuPane

    def current_row_visible(app) -> bool:
        pane = app.main.query_one(CpuPane)
        source = pane.query_one("#cpu-source")
        rows = source.shown.plain.split("\n")
        here = next(i for i, row in enumerate(rows) if row.startswith("▶"))
        top = source.virtual_region.y + here
        return pane.scroll_y <= top < pane.scroll_y + pane.scrollable_content_region.height

    async def go():
        async with lab(size=(80, 24), target=str(MACHINES / "default.toml")) as (app, pilot):
            await pilot.pause(0.1)
            assert current_row_visible(app)
            for _ in range(3):
                await command(pilot, app, "step 7")
                await settle(pilot, app)
                await pilot.pause(0.1)
                assert current_row_visible(app)
    run(go())
