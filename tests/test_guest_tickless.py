"""Tickless guests: the PV-timer kernels (pv, pv32, pvh, pvhvm) stop Xen's periodic timer, wait
on one-shot deadlines, and idle at their prompt with no timer armed, costing nothing."""

from __future__ import annotations

import pytest

from test_guest_net import PV_MAC, command, net_host, shell_guest, wait_prompt
from xen_helpers import peek

pytestmark = pytest.mark.machine       # every test here boots a whole machine


def kernel_ticks(host, dom) -> int:
    return int.from_bytes(peek(host, dom, dom.images["kernel"].symbols["ticks"], 8), "little")


def timer_calls(host, dom, since: int) -> list[str]:
    """The guest's timer hypercalls since trace position ``since``, by VCPUOP name."""
    return [e.data["args"][0] for e in host.trace.iter_all()
            if e.seq >= since and e.kind == "hypercall" and e.dom == dom.domid
            and e.data["name"] == "vcpu_op" and "timer" in str(e.data["args"][0])]


@pytest.mark.parametrize("mode", ["pv", "pv32", "pvh"])
def test_an_idle_guest_at_its_prompt_has_no_timer_and_the_host_goes_idle(tmp_path, mode):
    host, xl = net_host()
    dom = shell_guest(xl, tmp_path, "t1", mode)
    wait_prompt(host, dom)
    v = dom.vcpus[0]
    host.run(200_000)                   # let the boot's last events settle
    assert v.blocked and v.timer_deadline is None and v.periodic_period == 0
    icount, seq = host.instructions, host.trace.seq
    # Nothing is armed anywhere and every vCPU sleeps: the host has nothing to run.
    assert host.run(1_000_000) is False
    assert host.instructions == icount and host.trace.seq == seq
    assert host.next_deadline() is None
    # A key still wakes it at once: the console's event, not a tick.
    assert command(host, dom, "stats").startswith("syscalls ")


def test_an_idle_pvhvm_guest_arms_nothing_and_com1_wakes_it_on_irq_4(tmp_path):
    # Its inputs are hvc0 (an event) and COM1 (its receive interrupt, ISA IRQ 4 through QEMU's
    # dm_op and the vPIC): neither needs a timer, so the idle shell arms none.
    from lab.session.commands import type_into_console
    host, xl = net_host()
    dom = shell_guest(xl, tmp_path, "t1", "pvhvm")
    wait_prompt(host, dom)
    v = dom.vcpus[0]
    host.run(200_000)                   # let the boot's last events settle
    assert v.blocked and v.timer_deadline is None and v.periodic_period == 0
    icount, seq = host.instructions, host.trace.seq
    assert host.run(1_000_000) is False
    assert host.instructions == icount and host.trace.seq == seq
    assert host.next_deadline() is None
    # A key on COM1 (xl console's primary console of an HVM guest): QEMU raises IRQ 4, the
    # guest takes vector 0x24, reads the byte (the line falls) and echoes it on hvc0.
    start = len(dom.console_output)
    assert "serial port" in type_into_console(host, dom, "stats\n", "serial")
    wait_prompt(host, dom, start + 5)
    assert dom.console_output[start:].startswith("stats\nsyscalls "), dom.console_output[start:]
    irq4 = [e for e in host.trace.iter_all() if e.seq >= seq and e.kind == "interrupt"
            and e.dom == dom.domid and "ISA IRQ 4" in str(e.data.get("source", ""))]
    assert irq4 and {e.data["vector"] for e in irq4} == {0x24}
    assert timer_calls(host, dom, seq) == []        # no deadline armed to look at the UART
    host.run(200_000)
    assert v.blocked and v.timer_deadline is None and host.run(100_000) is False
    # hvc0 (xl console -t pv) still wakes it, with the console's event
    seq = host.trace.seq
    start = len(dom.console_output)
    assert "console ring" in type_into_console(host, dom, "stats\n", "pv")
    wait_prompt(host, dom, start + 5)
    assert dom.console_output[start:].startswith("stats\nsyscalls "), dom.console_output[start:]
    assert not [e for e in host.trace.iter_all() if e.seq >= seq and e.kind == "interrupt"
                and e.dom == dom.domid and "ISA IRQ 4" in str(e.data.get("source", ""))]
    host.run(200_000)
    assert v.blocked and v.timer_deadline is None and host.run(100_000) is False


def test_a_ping_nobody_answers_waits_on_one_deadline_per_try(tmp_path):
    host, xl = net_host()
    dom = shell_guest(xl, tmp_path, "p1", "pv", mac=PV_MAC)
    wait_prompt(host, dom)
    ticks, seq, start = kernel_ticks(host, dom), host.trace.seq, max(host.clock)
    out = command(host, dom, "ping 7", budget=20_000_000)
    assert out == "ping 10.0.0.17: no reply, errno 110\n"
    # three ARP requests, each waited for 1 s on one one-shot timer that fired once
    assert kernel_ticks(host, dom) - ticks == 3
    elapsed = max(host.clock) - start
    assert 3 * host.cpu_hz <= elapsed < 3 * host.cpu_hz + host.cpu_hz // 10
    assert timer_calls(host, dom, seq).count("VCPUOP_set_singleshot_timer") == 3
    # and once the answer (here: none) is in, nothing stays armed
    assert dom.vcpus[0].timer_deadline is None


def test_an_answered_ping_leaves_no_timer_armed(tmp_path):
    host, xl = net_host()
    dom = shell_guest(xl, tmp_path, "p1", "pv", mac=PV_MAC)
    wait_prompt(host, dom)
    seq = host.trace.seq
    assert command(host, dom, "ping 0") == "ping 10.0.0.1: echo reply from 00:16:3e:00:00:01 seq 1\n"
    calls = timer_calls(host, dom, seq)
    # one deadline for the ARP reply and one for the echo reply, each stopped when the answer came
    assert calls == ["VCPUOP_set_singleshot_timer", "VCPUOP_stop_singleshot_timer"] * 2
    assert dom.vcpus[0].timer_deadline is None
    assert kernel_ticks(host, dom) == 0


@pytest.mark.parametrize("mode,idle", [("pvh", "pvh_idle"), ("pvhvm", "pvhvm_idle")])
def test_an_event_that_comes_just_before_the_idle_is_not_slept_through(tmp_path, mode, idle):
    # The shell looked at its console ring, found it empty and calls the idle with interrupts on;
    # the console's event comes right then, before the idle's first instruction, and its
    # handler runs. The idle must see that it came and return instead of halting until some
    # later event: the key is read and echoed with no other input.
    from lab.session.commands import type_into_console
    host, xl = net_host()
    dom = shell_guest(xl, tmp_path, "t1", mode)
    wait_prompt(host, dom)
    v = dom.vcpus[0]
    entry = dom.images["kernel"].symbols[idle]
    start = len(dom.console_output)
    assert v.blocked and v.cpu.rip != entry
    type_into_console(host, dom, "x", "pv")
    for _ in range(50_000):                     # one instruction at a time, to the idle after
        if v.cpu.rip == entry:                  # the shell has read and echoed the key
            break
        host.run(1)
    assert v.cpu.rip == entry and v.cpu.rflags & 0x200     # IF: the shell waits with interrupts on
    type_into_console(host, dom, "y", "pv")
    host.run(400_000, stop=lambda: len(dom.console_output) > start + 1)
    assert dom.console_output[start:] == "xy"       # the idle returned and the shell read it
    host.run(200_000)
    assert v.blocked and v.timer_deadline is None
