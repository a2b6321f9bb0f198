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


def test_the_pvhvm_guest_polls_its_uart_on_a_deadline_not_a_tick(tmp_path):
    # Its input is COM1, whose interrupt the kernel leaves off: the idle shell arms one
    # 10 ms deadline per look at the UART, and the periodic timer stays off.
    host, xl = net_host()
    dom = shell_guest(xl, tmp_path, "t1", "pvhvm")
    wait_prompt(host, dom)
    v = dom.vcpus[0]
    seq = host.trace.seq
    start = max(host.clock)
    host.run(3_000_000, stop=lambda: max(host.clock) >= start + host.cpu_hz // 10)
    calls = timer_calls(host, dom, seq)
    assert calls and set(calls) == {"VCPUOP_set_singleshot_timer"}
    assert 8 <= len(calls) <= 12                    # ten looks in 100 ms
    assert v.periodic_period == 0


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
