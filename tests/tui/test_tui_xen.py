"""The screen on the default Xen scenario: Domain-0, a 64-bit PV guest and an HVM guest over EPT.

Every check reads what the screen shows (pane text, the StateView it drew,
the log rows) after driving it as a learner does: keys, clicks and commands.
"""

from __future__ import annotations

import pytest

from lab.paths import MACHINES
from lab.tui.runner import PAUSED, STOPPED
from lab.tui.widgets.domains import DomainTree
from lab.tui.widgets.logs import CallsPane, DevicePane
from tui_support import command, lab, message_text, output_text, pane_text, run, settle

pytestmark = pytest.mark.machine       # every test here boots a whole machine

XEN = str(MACHINES / "default.toml")


def xen_lab(size=(200, 50), **kwargs):
    return lab(size=size, target=XEN, **kwargs)


def _tree_lines(app) -> list[str]:
    tree = app.main.query_one(DomainTree)
    out = []
    for dnode in tree.root.children:
        out.append(str(dnode.label))
        out += ["  " + str(leaf.label) for leaf in dnode.children]
    return out


def _focused_dom(app):
    return app.view.focus_dom


def test_domains_tree_lists_every_domain_and_its_vcpus():
    async def go():
        async with xen_lab() as (app, pilot):
            await command(pilot, app, "until hypercall:mmu_update")
            lines = _tree_lines(app)
            assert lines[0].startswith("d0 Domain-0  pv · ") and lines[0].endswith("· 64 MiB")
            assert "vcpu0 pCPU" in lines[1] and "dom0 services" in lines[1]
            assert lines[2].startswith("d1 pv-guest  pv · ") and lines[2].endswith("· 32 MiB")
            assert "vcpu0 pCPU" in lines[3] and "ring 3 root kernel" in lines[3]
            assert lines[4].startswith("d2 hvm-guest  hvm · ") and lines[4].endswith("· 32 MiB")
            assert "ring 0 non-root" in lines[5]
            states = {d.name: d.state for d in app.view.domains}
            assert set(states) == {"Domain-0", "pv-guest", "hvm-guest"}
            assert all(s in ("running", "runnable", "blocked") for s in states.values())
            for d in app.view.domains:           # run state and pCPU as Xen has them
                v = app.runner.session.machine.domains[d.domid].vcpus[0]
                assert d.vcpus[0].runstate == v.runstate and d.vcpus[0].pcpu == v.pcpu
                pcpu = "pCPU-" if v.pcpu is None else f"pCPU{v.pcpu}"
                assert f"vcpu0 {pcpu} " in _tree_lines(app)[2 * d.domid + 1]
    run(go())


def test_focus_command_reaches_every_domain_and_every_pane_follows():
    async def go():
        async with xen_lab() as (app, pilot):
            await command(pilot, app, "run 300000")
            await command(pilot, app, "focus pv-guest")
            assert _focused_dom(app) == 1 and app.view.cpu["dom"] == 1
            assert "▶ d1v0" in pane_text(app, "#cpu-rings")
            assert pane_text(app, "#cpu-summary").startswith("d1 pv-guest (pv) vcpu 0")
            devio = app.main.query_one(DevicePane)
            assert "console of pv-guest (d1)" in pane_text(app, "#devio .console-title")
            assert "PV guest, 64-bit, kernel in ring 3" in devio.console_text
            assert "d1v0" in pane_text(app, "#pages-walk")
            assert "TLB of pv-guest (pv)" in pane_text(app, "#pages-tlb")
            assert "▶" in _tree_lines(app)[3]

            await command(pilot, app, "focus 2")
            assert _focused_dom(app) == 2 and app.view.cpu["dom"] == 2
            assert "▶ d2v0" in pane_text(app, "#cpu-rings")
            assert "console of hvm-guest (d2)" in pane_text(app, "#devio .console-title")
            assert "HVM guest, non-root ring 0" in devio.console_text
            assert "▶" in _tree_lines(app)[5] and "▶" not in _tree_lines(app)[3]

            await command(pilot, app, "focus Domain-0")
            assert _focused_dom(app) == 0 and app.view.service is not None
            assert "focus: Domain-0 (d0)" in output_text(app)
            summary = pane_text(app, "#cpu-summary")
            assert summary.startswith("d0 Domain-0 (pv)  dom0 services")
            assert "xenconsoled" in summary and "no guest instructions run" in summary
            assert "▶" not in pane_text(app, "#cpu-rings")
            assert pane_text(app, "#cpu-regs") == ""
            assert "Domain-0 runs no guest code" in pane_text(app, "#pages-walk")
            assert "console of Domain-0 (d0)" in pane_text(app, "#devio .console-title")
            assert "▶" in _tree_lines(app)[1]

            await command(pilot, app, "walk")              # nothing to walk: a message, not a walk
            assert "Domain-0 runs no guest code in the lab" in message_text(app)
            await command(pilot, app, "focus hvm-guest.0")
            assert _focused_dom(app) == 2 and app.view.service is None
            await command(pilot, app, "focus nobody")
            assert "no domain or vCPU 'nobody'" in message_text(app)
            assert _focused_dom(app) == 2
    run(go())


def test_focus_alone_lists_what_can_be_focused():
    async def go():
        async with xen_lab() as (app, pilot):
            await command(pilot, app, "focus")
            out = output_text(app)
            assert "  0.0  Domain-0 (pv) vcpu 0: dom0 services" in out
            assert "* 1.0  pv-guest (pv) vcpu 0: ring 3 root" in out
            assert "  2.0  hvm-guest (hvm) vcpu 0: ring 0 non-root" in out
    run(go())


def test_focus_by_keys_in_the_domains_tree_and_f9():
    messages: list = []

    async def go():
        async with xen_lab(messages=messages) as (app, pilot):
            tree = app.main.query_one(DomainTree)
            tree.focus()
            await pilot.pause()
            await pilot.press("home")                   # Domain-0's line
            await pilot.press("enter")
            await settle(pilot, app)
            assert _focused_dom(app) == 0
            await pilot.press("down", "down", "down")   # past Domain-0's vCPU and pv-guest to its vCPU
            await pilot.press("enter")
            await settle(pilot, app)
            assert _focused_dom(app) == 1 and app.view.cpu["dom"] == 1
            await pilot.press("down", "down", "enter")  # hvm-guest's vCPU
            await settle(pilot, app)
            assert _focused_dom(app) == 2
            unique = dict.fromkeys(m for m in messages if isinstance(m, DomainTree.FocusRequested))
            specs = [m.spec for m in unique]          # (the hook sees a message at every node it bubbles to)
            assert specs == ["0.0", "1.0", "2.0"]
            # F9 goes round the domains, wherever the focus is.
            app.main.cmd().focus()
            seen = []
            for _ in range(3):
                await pilot.press("f9")
                await settle(pilot, app)
                seen.append(_focused_dom(app))
            assert seen == [0, 1, 2]
            assert app.main.cmd().value == ""
    run(go())


def test_rings_tell_the_pv_kernel_from_its_user_program_and_place_hvm_in_non_root():
    async def go():
        async with xen_lab() as (app, pilot):
            await command(pilot, app, "focus pv-guest")
            rings = pane_text(app, "#cpu-rings").splitlines()
            assert "Xen" in rings[1] and rings[1].index("Xen") < rings[0].index("non-root")
            assert "▶ d1v0 kernel" in rings[4]               # ring 3 root, in kernel mode
            assert "64-bit PV guest kernel" in pane_text(app, "#cpu-summary")
            for _ in range(20):                                  # Xen returns to the user program
                await command(pilot, app, "until hypercall:iret")  # (or to the kernel, after an upcall)
                rings = pane_text(app, "#cpu-rings").splitlines()
                if "▶ d1v0 user" in rings[4]:
                    break
            assert "▶ d1v0 user" in rings[4]
            assert "user program of the PV guest" in pane_text(app, "#cpu-summary")
            await command(pilot, app, "focus hvm-guest")
            rings = pane_text(app, "#cpu-rings").splitlines()
            ring0 = rings[1]
            assert ring0.index("▶ d2v0") >= rings[0].index("non-root")    # ring 0 non-root
            assert "d1v0" in rings[4] and "▶ d1v0" not in rings[4]
    run(go())


def test_cpu_pane_shows_the_hypercall_page_stub():
    async def go():
        async with xen_lab() as (app, pilot):
            await command(pilot, app, "until hypercall:mmu_update")
            await command(pilot, app, "focus pv-guest")
            source = pane_text(app, "#cpu-source")
            assert source.splitlines()[0] == "hypercall page (written by Xen)"
            assert "▶ +0xff0  ret" in source and "+0xfe0  syscall" in source
            assert ".zero" not in source
    run(go())


def test_selecting_a_hypercall_names_the_kernel_line_that_made_it():
    async def go():
        async with xen_lab() as (app, pilot):
            await command(pilot, app, "until hypercall:mmu_update")
            calls = app.main.query_one(CallsPane)
            lst = calls.list
            lst.focus()
            await pilot.press("end")
            await pilot.pause()
            ev = lst.selected_event
            assert ev.kind == "hypercall" and ev.data["name"] == "mmu_update" and ev.dom == 1
            detail = pane_text(app, "#calls .log-detail-text")
            assert "(#%d, cycle" % ev.seq in detail and "d1 pv-guest vcpu 0" in detail
            assert "called from machines/kernels/pv_ops.s:" in detail and "call HC_mmu_update" in detail
            assert "trapped into Xen in the hypercall page (written by Xen) at hypercall_page+0xfe0" in detail
            assert "asks Xen to write page-table entries" in detail
            row = lst.render_line(lst.cursor - lst.scroll_offset.y).text
            assert "d1.v0" in row and "mmu_update" in row
    run(go())


def test_hypercall_log_shows_domains_and_filters_by_domain():
    async def go():
        async with xen_lab() as (app, pilot):
            await command(pilot, app, "run 300000")
            calls = app.main.query_one(CallsPane)
            doms = {e.dom for e in calls.list.events}
            assert {0, 1, 2, None} <= doms               # None: Xen's own (domains created)
            xen_rows = [text for ev, text in calls.list._rows if ev.dom is None]
            assert xen_rows and all(" Xen " in t and "domain" in t for t in xen_rows)
            await command(pilot, app, "filter domain pv-guest")
            assert {e.dom for e in calls.list.events} == {1}
            assert "domain d1 pv-guest" in pane_text(app, "#calls .log-filter")
            await command(pilot, app, "filter domain xen")
            assert {e.dom for e in calls.list.events} == {None}
            assert "domain Xen" in pane_text(app, "#calls .log-filter")
            await command(pilot, app, "filter clear")
            calls.list.focus()
            seen = []
            for _ in range(5):
                await pilot.press("d")
                seen.append(calls.filter.dom)
                if calls.filter.dom != "all":
                    assert {e.dom for e in calls.list.events} == {calls.filter.dom}
            assert seen == [None, 0, 1, 2, "all"]
    run(go())


def test_xl_list_console_and_dmesg_at_the_command_line():
    async def go():
        async with xen_lab(size=(120, 40)) as (app, pilot):
            await command(pilot, app, "run 300000")
            await command(pilot, app, "xl list")
            out = output_text(app)
            assert "Name" in out and "ID   Mem VCPUs" in out
            for name in ("Domain-0", "pv-guest", "hvm-guest"):
                assert name in out
            assert app.main.active_pane == "output"       # a long answer is shown where it can be read
            await command(pilot, app, "xl console pv-guest")     # attaches, as real xl console does
            assert "xenlab kernel (PV guest, 64-bit, kernel in ring 3)" in output_text(app)
            assert app.console_dom == "pv-guest"
            assert str(app.main.query_one("#prompt").render()) == "pv-guest>"
            await pilot.press("ctrl+right_square_bracket")
            assert app.console_dom is None
            await command(pilot, app, "xl dmesg")
            out = output_text(app)
            assert "(XEN) Xen version 4.23" in out and "(XEN) d1: created pv-guest" in out
            await command(pilot, app, "xl console nobody")
            assert "nobody" in message_text(app)
    run(go())


def test_break_on_mmu_update_then_run_stops_there():
    async def go():
        async with xen_lab() as (app, pilot):
            await command(pilot, app, "break hypercall:mmu_update")
            assert "breakpoint 0: hypercall:mmu_update" in output_text(app)
            await pilot.press("f5")
            await settle(pilot, app)
            assert app.runner.mode == PAUSED
            assert "run: breakpoint after" in output_text(app)
            last = app.runner.session.break_hit
            assert last.kind == "hypercall" and last.data["name"] == "mmu_update"
            assert f"#{last.seq} hypercall mmu_update" in output_text(app)
            status = pane_text(app, "#status")
            assert "break hypercall:mmu_update" in status
            await command(pilot, app, "run")               # and again, at the next one
            assert app.runner.session.break_hit.seq > last.seq
    run(go())


def test_until_an_io_exit_of_the_hvm_guest():
    async def go():
        async with xen_lab() as (app, pilot):
            await command(pilot, app, "until vmexit:IO_INSTRUCTION")
            out = output_text(app)
            assert "until vmexit:IO_INSTRUCTION: reached" in out and "vmexit IO_INSTRUCTION(30)" in out
            calls = app.main.query_one(CallsPane)
            last = [e for e in calls.list.events if e.kind == "vmexit"][-1]
            assert last.data["reason"] == "IO_INSTRUCTION" and last.dom == 2
            await command(pilot, app, "focus hvm-guest")
            assert "out 0xe9, al" in pane_text(app, "#cpu-source")
            assert "ring 0 non-root" in pane_text(app, "#cpu-summary")
    run(go())


def test_f8_lands_on_a_hypercall_or_a_vm_exit():
    async def go():
        async with xen_lab() as (app, pilot):
            trace = app.runner.session.machine.trace
            for _ in range(3):
                seq = trace.seq
                await pilot.press("f8")
                await settle(pilot, app)
                assert app.runner.mode == PAUSED
                reached = [e for e in trace.iter_all() if e.seq >= seq and e.kind in ("hypercall", "vmexit")]
                assert reached
                first = reached[0]
                assert f"#{first.seq} {first.summary()}" in output_text(app)
                assert "until hypercall,vmexit: reached" in output_text(app)
    run(go())


def test_hvm_two_dimensional_walk_in_the_page_table_pane():
    async def go():
        async with xen_lab(size=(120, 40)) as (app, pilot):
            await command(pilot, app, "until sysret")       # the HVM kernel enters its user program
            await command(pilot, app, "focus hvm-guest")
            await command(pilot, app, "walk 0x401000")
            assert "pages" in app.main.visible_panes()
            walk = pane_text(app, "#pages-walk")
            assert "walk 0x401000 (pinned address)" in walk and "d2v0" in walk
            assert "2-D walk" in walk and walk.count("through EPT:") == 5
            assert "host pa 0x" in walk and "24 memory references" in walk
    run(go())


def test_the_machine_runs_to_its_end_and_shows_the_guests_shut_down():
    async def go():
        async with xen_lab() as (app, pilot):
            await command(pilot, app, "run")
            assert app.runner.mode == STOPPED
            states = {d.name: d.state for d in app.view.domains}
            assert states["pv-guest"] == "shutdown" and states["hvm-guest"] == "shutdown"
            assert "shutdown (poweroff)" in _tree_lines(app)[2]
            calls = app.main.query_one(CallsPane)
            shutdowns = [e for e in calls.list.events if e.kind == "domain" and e.data.get("op") == "shutdown"]
            assert {e.data["name"] for e in shutdowns} == {"pv-guest", "hvm-guest"}
    run(go())


def test_until_and_run_end_exactly_where_the_headless_commands_end():
    """The screen runs the machine in slices; on a Xen host they must not change its course."""
    from lab.session.commands import execute
    from lab.tui.launch import build_session
    headless = build_session(XEN)
    execute(headless, "until vmexit:IO_INSTRUCTION")
    after_until = headless.machine.digest()
    execute(headless, "run 250000")
    after_run = headless.machine.digest()

    async def go():
        async with xen_lab(speed=None) as (app, pilot):
            app.runner._chunks["until"] = app.runner._chunks["run"] = 7     # tiny slices, had they counted
            await command(pilot, app, "until vmexit:IO_INSTRUCTION")
            assert app.runner.session.machine.digest() == after_until
            await command(pilot, app, "run 250000")
            assert app.runner.session.machine.digest() == after_run
    run(go())


def test_xen_layouts_keep_everything_on_screen():
    async def go():
        async with xen_lab(size=(80, 24)) as (app, pilot):
            await command(pilot, app, "until hypercall:mmu_update")
            everything = {"domains", "cpu", "pages", "calls", "devio", "output"}
            for size, shown in (((70, 24), {"cpu"}), ((80, 24), {"cpu"}),
                                ((120, 40), {"domains", "cpu", "pages", "calls"}),
                                ((160, 45), everything), ((200, 50), everything)):
                await pilot.resize_terminal(*size)
                await pilot.pause(0.1)
                if size == (120, 40):
                    app.main.activate("calls")
                    await pilot.pause(0.1)
                visible = [p for p in app.main.query(".pane") if p.display and p.region.area]
                assert {p.id for p in visible} == shown, size
                panes = [p.region for p in visible]
                # Each pane has room for its content, not a sliver.
                assert all(r.height >= 5 and r.width >= 30 for r in panes), size
                for i, a in enumerate(panes):
                    assert app.main.region.contains_region(a)
                    assert not any(a.overlaps(b) for b in panes[i + 1:])
                for sel in ("#cmd", "#status", "KeyFooter"):
                    assert app.main.region.contains_region(app.main.query_one(sel).region)
                # Every key of the footer fits beside the palette hint, even at 80 columns.
                footer = app.main.query_one("KeyFooter")
                keys = footer.keys
                assert keys and all(0 <= start < end <= footer.size.width for start, end, _ in keys)
                assert all(a[1] <= b[0] for a, b in zip(keys, keys[1:]))
                # the palette key on the right from 80 columns; below, it would cover keys
                assert (keys[-1][2].key == "ctrl+p") == (size[0] >= 80)
            # The domains pane is wide enough for a vCPU's line at 200 columns.
            tree = app.main.query_one(DomainTree)
            assert tree.virtual_size.width <= tree.scrollable_content_region.width
    run(go())


def test_console_mode_types_lines_into_the_guest_until_ctrl_bracket():
    async def go():
        async with xen_lab() as (app, pilot):
            await command(pilot, app, "console hvm-guest")
            assert app.console_dom == "hvm-guest"
            assert str(app.main.query_one("#prompt").render()) == "hvm-guest>"
            await command(pilot, app, "ls -l")
            host = app.runner.session.machine
            dom = host.domain_by_name("hvm-guest")
            uart = host.services.device_model.instance(dom).serial
            assert bytes(uart.rx + uart.pending) == b"ls -l\n"       # waiting in the UART for the guest
            assert "typed 6 characters into hvm-guest's console" in output_text(app)
            await pilot.press("ctrl+right_square_bracket")
            await settle(pilot, app)
            assert app.console_dom is None and str(app.main.query_one("#prompt").render()) == "xen>"
            await command(pilot, app, "console pv-guest hello")      # with text: one line, no mode
            assert app.console_dom is None
    run(go())


def test_console_t_attaches_to_one_of_the_guests_consoles_and_the_pane_shows_it():
    """xl console -t pv|serial (tools/xl/xl_console.c): an HVM guest has both its device
    model's serial port and a PV console; attached to one, the command line types into it and
    the console pane shows that console alone, naming the other; otherwise it shows them all."""
    async def go():
        async with xen_lab() as (app, pilot):
            await command(pilot, app, "focus hvm-guest")
            assert "every console: serial, pv" in pane_text(app, "#devio .console-title")
            await command(pilot, app, "xl console -t pv hvm-guest")
            assert (app.console_dom, app.console_kind) == ("hvm-guest", "pv")
            await settle(pilot, app)
            assert "pv console of hvm-guest (d2) · also serial" in pane_text(app, "#devio .console-title")
            await command(pilot, app, "ls")
            host = app.runner.session.machine
            dom = host.domain_by_name("hvm-guest")
            assert bytes(host.services.xenconsoled.pending_input.get(dom.domid, b"")) == b"" and \
                "the console ring's in[]" in output_text(app)          # into the ring, not the UART
            await pilot.press("ctrl+right_square_bracket")
            await settle(pilot, app)
            assert (app.console_dom, app.console_kind) == (None, None)
            await command(pilot, app, "console -t serial hvm-guest")
            assert (app.console_dom, app.console_kind) == ("hvm-guest", "serial")
            await settle(pilot, app)
            assert "serial console of hvm-guest (d2) · also pv" in pane_text(app, "#devio .console-title")
    run(go())


def test_a_breakpoint_in_the_hvm_guest_shows_where_it_fired():
    """Focused on the PV guest, a breakpoint fires in the HVM guest: the panes move there, the
    exit is selected in the log with its explanation, and the CPU pane shows its source line."""
    async def go():
        async with xen_lab(size=(200, 50)) as (app, pilot):
            await command(pilot, app, "focus pv-guest")
            await command(pilot, app, "break vmexit:IO_INSTRUCTION")
            await command(pilot, app, "run")
            assert app.view.focus_dom == 2 and app.view.cpu["label"].startswith("hvm-guest")
            calls = app.main.query_one(CallsPane)
            ev = calls.list.selected_event
            assert ev is not None and ev.kind == "vmexit" and ev.data["reason"] == "IO_INSTRUCTION"
            assert ev is app.runner.stop_event
            detail = pane_text(app, "#calls .log-detail-text")
            assert detail.startswith("vmexit IO_INSTRUCTION") and "caused by" in detail
            assert any(cur for _, _, cur in app.view.source)
    run(go())


def test_tables_in_the_command_output_are_fitted_when_drawn_and_reflow_on_resize():
    """At 120x40 the output pane is about half the screen: xl list keeps every column
    (Time(s) included) and xl info's long values wrap under themselves; at 200x50 the same
    answers are drawn again for the new width, and the transcript keeps them as written."""
    from lab.tui.widgets.output import OutputLog

    async def go():
        async with xen_lab(size=(120, 40)) as (app, pilot):
            await command(pilot, app, "xl list")
            await command(pilot, app, "xl info")
            out = app.main.query_one("#output", OutputLog)
            width = out.scrollable_content_region.width
            assert width < 80                        # narrower than xl's own 80 columns
            shown = out.lines_shown()
            header = next(ln for ln in shown if ln.startswith("Name"))
            assert header.split() == ["Name", "ID", "Mem", "VCPUs", "State", "Time(s)"]
            assert max(len(ln) for ln in shown) <= width
            caps = shown.index(next(ln for ln in shown if ln.startswith("hw_caps")))
            assert shown[caps + 1].startswith(" " * 20)          # the value goes on under itself
            assert "Name                                        ID" in output_text(app)
            await pilot.resize_terminal(200, 50)
            await settle(pilot, app)
            wide = out.lines_shown()
            assert out.scrollable_content_region.width != width
            header = next(ln for ln in wide if ln.startswith("Name"))
            assert header.split() == ["Name", "ID", "Mem", "VCPUs", "State", "Time(s)"]
            assert wide != shown and max(len(ln) for ln in wide) <= out.scrollable_content_region.width
    run(go())


def test_the_status_bar_and_the_cpu_pane_tell_their_clocks_apart():
    """One story for time: the status bar's host clock is the furthest pCPU's; the CPU pane
    shows the focused vCPU's own clock beside it and the cycles it ran (xl vcpu-list's
    Time(s)); help explains the three words."""
    from lab.tui.screens.help import help_text, pane_help

    async def go():
        async with xen_lab(size=(200, 50)) as (app, pilot):
            await command(pilot, app, "run 300000")
            await command(pilot, app, "focus pv-guest")
            await pilot.pause(0.3)
            await settle(pilot, app)
            session = app.runner.session
            host_insns, host_clock = session.clock()
            vcpu = session.machine.domains[1].vcpus[0]
            status = pane_text(app, "#status")
            assert f"host clock {host_clock:,}" in status and f"host insn {host_insns:,}" in status
            cpu = pane_text(app, "#cpu-summary")
            assert f"vcpu clock {vcpu.cpu.cycles:,}  host clock {host_clock:,}" in cpu
            assert f"ran {vcpu.run_cycles:,} cycles" in cpu
            assert 0 < vcpu.run_cycles <= vcpu.cpu.cycles <= host_clock
            assert "cycle " not in cpu.replace("cycles", "")      # no unlabelled third counter
    run(go())
    text = help_text()
    for word in ("**host clock**", "**vcpu clock**", "**ran**", "Time(s)"):
        assert word in text.split("## Time", 1)[1].split("##", 1)[0]
    assert "vcpu clock" in pane_help("CPU")          # F1 on the CPU pane says it too
