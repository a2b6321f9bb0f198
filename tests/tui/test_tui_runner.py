"""The simulation thread and the plain state behind the screen, without a screen."""

from __future__ import annotations

import time

import pytest

from lab.session.build import native_machine
from lab.session.eventspec import EventSpec, parse_spec
from lab.session.session import Session
from lab.trace import Event
from lab.tui.explain import describe_event, event_row, explanation
from lab.tui.runner import (CRASHED, PAUSED, RUNNING, SPEEDS, STOPPED, AnyEvent, AnyOf, Runner,
                            where_line)
from lab.tui.state import ALL, History, LogFilter, layout_for


def wait_for(condition, timeout: float = 10.0) -> None:
    """Until the sim thread has made ``condition`` true (it runs on its own thread, at its own pace)."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "the sim thread never got there"
        time.sleep(0.002)


@pytest.fixture
def runner():
    r = Runner(Session(native_machine()))
    r.start()
    assert r.wait_idle()
    yield r
    r.close()


@pytest.mark.machine
def test_boot_publishes_a_view(runner):
    assert runner.mode == PAUSED
    v = runner.view
    assert v.cpu["label"] == "bare metal" and v.vcpus[0].focused
    assert v.vcpus[0].state == "running" and v.vcpus[0].spec == "0.0"
    assert runner.drain_events(100)[0].kind == "boot"


@pytest.mark.machine
def test_step_and_until_are_exact(runner):
    runner.step(3)
    assert runner.wait_idle()
    assert runner.view.cpu["icount"] == 3
    runner.until(parse_spec("trap:#PF"))
    assert runner.wait_idle()
    headless = Session(native_machine())
    headless.step(3)
    headless.until(parse_spec("trap:#PF"))
    assert runner.view.cpu["icount"] == headless.machine.cpu.icount
    assert runner.session.machine.digest() == headless.machine.digest()


@pytest.mark.machine
def test_run_to_the_end_and_refuse_more(runner):
    runner.run()
    assert runner.wait_idle(30)
    assert runner.mode == STOPPED and runner.view.stopped == "power off"
    runner.step(1)
    assert runner.wait_idle()
    assert any("has stopped" in r.text for r in runner.drain_replies())


@pytest.mark.machine
def test_pause_interrupts_a_slow_run(runner):
    runner.set_speed(0)                      # one instruction per tick
    runner.run()
    wait_for(lambda: runner.stats.instructions > 0)          # the run has begun, slowly
    assert runner.mode == RUNNING
    runner.pause()
    assert runner.wait_idle()
    assert runner.mode == PAUSED
    assert 0 < runner.view.cpu["icount"] < 50


@pytest.mark.machine
def test_the_simulation_gives_way_to_the_screen_until_it_has_answered():
    runner = Runner(Session(native_machine(arg=600)))        # a workload that outlasts the test
    runner.start()
    try:
        assert runner.wait_idle()
        runner.run()                                          # full speed
        wait_for(lambda: runner.stats.instructions > 0)
        runner.give_way(30.0)                                 # a key: the screen has work to do
        time.sleep(0.05)                                      # the slice under way ends
        held = runner.stats.instructions
        time.sleep(0.1)
        assert runner.stats.instructions == held and runner.mode == RUNNING
        runner.resume()                                       # answered: at once, not after the hold
        wait_for(lambda: runner.stats.instructions > held, timeout=2.0)
        runner.pause()
        assert runner.wait_idle()
    finally:
        runner.close()


@pytest.mark.machine
def test_event_buffer_is_bounded():
    r = Runner(Session(native_machine()), buffer=16)
    r.start()
    r.run()
    assert r.wait_idle(30)
    assert len(r.events) == 16
    assert r.stats.events_seen > 300          # the trace kept everything
    assert len(r.session.machine.trace) == r.stats.events_seen
    r.close()


@pytest.mark.machine
def test_commands_run_on_the_sim_thread_and_errors_are_replies(runner):
    runner.command("regs")
    runner.command("nonsense")
    assert runner.wait_idle()
    replies = runner.drain_replies()
    assert replies[0].kind == "out" and "rflags" in replies[0].text
    assert replies[1].kind == "err" and "unknown command" in replies[1].text


def test_factory_errors_leave_no_machine():
    from lab.errors import UserError

    def bad():
        raise UserError("kernel.s:3:1: unknown instruction 'foo'")
    r = Runner(factory=bad)
    r.start()
    assert r.wait_idle()
    assert r.mode == "no machine" and "unknown instruction" in r.error
    r.close()


@pytest.mark.machine
def test_internal_errors_are_caught(runner):
    def boom(n=None):
        raise ZeroDivisionError("oops")
    runner.session.run = boom
    runner.run()
    assert runner.wait_idle()
    assert runner.mode == CRASHED and runner.error == "ZeroDivisionError: oops"
    assert "Traceback" in runner.last_traceback


def test_any_event_and_any_of():
    ev = Event(1, 10, 0, None, 0, "vmexit", {"reason": "CPUID"})
    assert AnyEvent().matches(ev)
    spec = AnyOf(EventSpec("hypercall"), EventSpec("vmexit"))
    assert spec.matches(ev) and str(spec) == "hypercall,vmexit"        # what 'until' takes back
    assert not spec.matches(Event(2, 10, 0, None, 0, "trap", {}))


@pytest.mark.machine
def test_where_line():
    s = Session(native_machine())
    assert where_line(s.cpu_view()).startswith("bare metal: ring 0 root, rip 0x")


def test_speeds_end_at_full_speed():
    assert SPEEDS[-1] is None and all(a < b for a, b in zip(SPEEDS[:-2], SPEEDS[1:-1]))


# -- plain state -------------------------------------------------------------------
def test_history():
    h = History(limit=3)
    for line in ("a", "b", "b", "c", "d"):
        h.add(line)
    assert h.items == ["b", "c", "d"]
    assert h.older("draft") == "d" and h.older("") == "c" and h.older("") == "b" and h.older("") == "b"
    assert h.newer() == "c" and h.newer() == "d" and h.newer() == "draft" and h.newer() is None


def test_log_filter():
    f = LogFilter(("trap", "syscall"))
    evs = [Event(1, 0, 0, None, 0, "trap", {}), Event(2, 0, 0, 1, 0, "syscall", {})]
    f.saw(evs)
    assert [f.keep(e) for e in evs] == [True, True]
    assert f.cycle_kind() == "trap" and [f.keep(e) for e in evs] == [True, False]
    f.set_kind(ALL)
    assert f.cycle_dom() is None and f.cycle_dom() == 1 and f.cycle_dom() == ALL
    f.set_dom("d1")
    assert f.dom == 1 and [f.keep(e) for e in evs] == [False, True]
    with pytest.raises(ValueError):
        f.set_kind("ioport")
    with pytest.raises(ValueError):
        f.set_dom("x1")


def test_layout_for_sizes():
    assert layout_for(80, 24) == "narrow"
    assert layout_for(120, 40) == "medium"
    assert layout_for(200, 50) == "wide"
    assert layout_for(200, 30) == "narrow"


# -- explanations -------------------------------------------------------------------
def test_explanations_by_kind_and_name():
    pf = Event(5, 100, 0, None, 0, "trap", {"vector": 14, "mnemonic": "#PF", "error_code": 6,
                                              "cr2": 0x1000, "rip": 0x400170})
    assert "page fault" in explanation(pf) and "CR2" in explanation(pf)
    sc = Event(6, 100, 0, None, 0, "syscall", {"nr": 1, "rip": 0x400090, "via": "syscall"})
    assert "ring 3 -> ring 0 through LSTAR" in explanation(sc)
    hc = Event(7, 100, 0, 1, 0, "hypercall", {"name": "mmu_update", "nr": 1, "args": [1, 2], "ret": 0})
    assert "mmu_update" in explanation(hc) and "page-table" in explanation(hc)
    ve = Event(8, 100, 0, 2, 0, "vmexit", {"reason": "IO_INSTRUCTION", "nr": 30, "rip": 0x10})
    assert "QEMU" in explanation(ve)
    ev = Event(9, 100, 0, 1, 0, "evtchn", {"op": "send", "port": 3})
    assert "event channel" in explanation(ev)
    row = event_row(hc)
    assert "d1.v0" in row and "hypercall mmu_update nr=1 (0x1, 0x2) -> 0" in row
    assert "rax" in explanation(hc) and "x16" not in explanation(hc)


def test_explanations_on_arm_name_arm_s_registers_and_vectors():
    # Xen on Arm: hvc #0xEA1, the number in x16 (xen/arch/arm/traps.c); exceptions go to VBAR_EL1
    hc = Event(7, 100, 0, 1, 0, "hypercall", {"name": "sched_op", "nr": 29, "args": [0, 0], "ret": 0,
                                              "detail": {"esr": "0x5a000ea1", "x16": 29}})
    assert "x16" in explanation(hc) and "rax" not in explanation(hc) and "sched_op" in explanation(hc)
    irq = Event(8, 100, 0, 1, 0, "trap", {"vector": 0x80, "mnemonic": "IRQ", "reason": "IRQ"})
    assert "VBAR_EL1" in explanation(irq) and "IDT" not in explanation(irq)
    svc = Event(9, 100, 0, 1, 0, "trap", {"vector": 0x400, "mnemonic": "SVC from AArch64",
                                          "reason": "ESR 0x56000000: EC 0x15 SVC from AArch64, ISS 0x0"})
    assert "VBAR_EL1" in explanation(svc)


def test_the_io_pane_says_which_emulator_carried_an_access_out():
    """hvm/intercept.c: Xen's own devices answer before any ioreq reaches QEMU; the I/O log
    line and its explanation name the emulator the trace records."""
    from lab.tui.explain import event_details
    xen = Event(1, 0, 0, 1, 0, "ioport", {"port": 0x21, "size": 1, "dir": "in", "value": 0xFB,
                                          "device": "vPIC (in Xen: vpic.c)", "emulator": "xen"})
    dm = Event(2, 0, 0, 1, 0, "ioport", {"port": 0x1F7, "size": 1, "dir": "in", "value": 0x50,
                                         "device": "device model (ioreq)", "emulator": "device model"})
    lapic = Event(3, 0, 0, 1, 0, "mmio", {"addr": 0xFEE00030, "size": 4, "dir": "in", "value": 0x50014,
                                          "device": "vLAPIC (in Xen: vlapic.c): version", "emulator": "xen"})
    assert "in Xen (vPIC" in event_details(xen) and "in QEMU (device model" in event_details(dm)
    assert "in Xen (vLAPIC (in Xen: vlapic.c): version)" in event_details(lapic)
    assert "Xen emulated it itself" in explanation(xen) and "QEMU in dom0" in explanation(dm)
    assert "emulated by xen" in xen.summary()


@pytest.mark.machine
def test_describe_event_maps_rip_to_the_source_line():
    s = Session(native_machine())
    ev = s.until(parse_spec("trap:#PF"))
    lines = describe_event(ev, s.machine.images.values())
    assert lines[0].startswith("trap #PF")
    assert lines[1].startswith("caused by machines/programs/workload.s:")
    assert lines[1].split("  ", 1)[1] in " ".join(s.machine.images["program"].source_line(ev.data["rip"]).text.split())
    no_rip = Event(1, 0, 0, None, 0, "console", {"text": "hi"})
    assert describe_event(no_rip, [])[1] == "this event records no rip"


@pytest.mark.machine
def test_xen_slices_of_any_length_end_where_headless_ends(monkeypatch):
    """On a Xen host the runner slices by time at the scheduler's own boundaries: however short
    the slices (here one scheduling step each), the machine takes the same course as headless,
    and a step that moves nothing on (dom0's vCPU blocking) is not taken for a stuck machine."""
    from lab.paths import MACHINES
    from lab.tui import runner as runner_mod
    from lab.tui.launch import build_session
    headless = build_session(str(MACHINES / "default.toml"))
    want = headless.until(parse_spec("vmexit:IO_INSTRUCTION"))
    headless_digest = headless.machine.digest()
    monkeypatch.setattr(runner_mod, "FULL_SPEED_SLICE", 0.0)
    r = Runner(build_session(str(MACHINES / "default.toml")))
    r.start()
    try:
        assert r.wait_idle(30)
        r.drain_replies()
        r.until(parse_spec("vmexit:IO_INSTRUCTION"))
        assert r.wait_idle(60)
        replies = " ".join(x.text for x in r.drain_replies())
        assert "reached after" in replies and f"#{want.seq} " in replies, replies
        assert r.stats.chunks > 3                          # it really was cut into slices
        assert r.session.machine.digest() == headless_digest
    finally:
        r.close()


def test_every_command_from_the_screen_is_noted_once_timed_ones_too(runner):
    heard = []
    runner.session.input_listeners.append(heard.append)
    runner.step(1)
    runner.command("step 100")              # a long step: a job on the sim thread
    runner.until("trap:#PF")
    runner.command("regs")
    runner.command("step 1 2")              # a mistake reaches nothing
    runner.focus_next()
    assert runner.wait_idle(30)
    # Each command line once; the screen's runs (a long step, until) as the run they made,
    # up to the instruction count where it ended, so a recording runs them again exactly.
    assert [i.text for i in heard if i.kind == "command"] == ["step 1", "regs", "focus next"]
    runs = [i for i in heard if i.kind == "run"]
    assert runs and int(runs[-1].text.split()[0]) == runner.session.clock()[0]
    assert "step: unexpected '2'" in " ".join(r.text for r in runner.drain_replies())


def test_open_from_the_no_machine_state():
    from lab.errors import UserError

    def bad():
        raise UserError("kernel.s:3:1: unknown instruction 'foo'")
    r = Runner(factory=bad)
    r.start()
    try:
        r.wait_idle(10)
        assert r.mode == "no machine"
        r.command("regs")
        r.command("open native.s")
        assert r.wait_idle(30)
        replies = " ".join(x.text for x in r.drain_replies())
        assert "'open PATH' opens one" in replies
        assert "opened machines/kernels/native.s" in replies
        assert r.mode == PAUSED and r.session.time_machine is not None
        r.step(2)
        assert r.wait_idle(10) and r.view.cpu["icount"] == 2
    finally:
        r.close()


def test_reset_from_the_screen_starts_again_and_clears_the_logs():
    from lab.paths import KERNELS
    from lab.session import live
    runner = Runner(live.open_session([str(KERNELS / "native.s")]))
    runner.start()
    try:
        assert runner.wait_idle()
        runner.run(2000)
        assert runner.wait_idle(30)
        runner.drain_events(100_000)
        history = runner.history
        runner.command("reset")
        assert runner.wait_idle(30)
        assert runner.history > history and runner.view.cpu["icount"] == 0
        assert [e.kind for e in runner.drain_events(100)][:1] == ["boot"]
    finally:
        runner.close()


@pytest.mark.machine
def test_a_run_with_every_vcpu_idle_and_no_timer_says_it_waits_for_input(tmp_path):
    """Tickless guests at their prompts arm no timer: the host has nothing to run, and the
    runner says so instead of running on."""
    from lab.paths import KERNELS
    from lab.tui.launch import build_session
    (tmp_path / "pv.cfg").write_text(f'name = "idle-pv"\ntype = "pv"\nmemory = 32\nvcpus = 1\n'
                                     f'kernel = "{KERNELS / "pv.s"}"\ncmdline = "shell"\n')
    (tmp_path / "idle.toml").write_text('description = "one idle PV guest"\n[host]\npcpus = 2\n'
                                        'memory = 512\n[dom0]\nmemory = 64\n[[domain]]\nconfig = "pv.cfg"\n')
    r = Runner(build_session(str(tmp_path / "idle.toml")))
    r.start()
    try:
        assert r.wait_idle(30)
        r.drain_replies()
        r.run()
        assert r.wait_idle(120)
        replies = " ".join(x.text for x in r.drain_replies())
        assert "no timer is armed: nothing happens until input" in replies, replies
        assert r.session.machine.domains[1].console_output.endswith("guest# ")
    finally:
        r.close()
