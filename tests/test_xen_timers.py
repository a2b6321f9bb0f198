"""Xen's timer round: a scheduling round with nothing due changes nothing; a due vCPU timer or
emulated PIT fires whichever domain it is in, in domain order."""

from __future__ import annotations

import pytest

from lab.xen import timers
from lab.xen.domain import RUNSTATE_BLOCKED
from xen_helpers import script_guest, small_host

pytestmark = pytest.mark.machine


@pytest.fixture
def env(tmp_path):
    host, xl = small_host(mem_mib=128)
    g = script_guest(xl, tmp_path, "pv-a", "pv", memory=16)
    h = script_guest(xl, tmp_path, "hvm-a", "hvm", memory=16)
    return host, g, h


def _quiet(host, now: int) -> None:
    """No vCPU timer armed before ``now`` and the PIT stopped: nothing is due."""
    for d in host.domains.values():
        for v in d.vcpus:
            v.timer_deadline = None
            v.periodic_period = None
        pit = d.devices.get("vpit")
        if pit is not None:
            pit.running = False
        pic = d.devices.get("vpic")
        if pic is not None:
            pic.waiting = False


def test_a_round_with_nothing_due_emits_nothing(env):
    host, g, h = env
    now = max(host.clock)
    _quiet(host, now)
    g.vcpu.timer_deadline = now + 1                 # due one cycle later: not yet
    seq = host.trace.seq
    timers.fire(host, now)
    assert host.trace.seq == seq and g.vcpu.timer_deadline == now + 1


def test_a_due_timer_in_the_last_domain_fires(env):
    host, g, h = env
    now = max(host.clock)
    _quiet(host, now)
    v = h.vcpu                                      # the highest domid
    assert v.domain.domid == max(host.domains)
    v.runstate = RUNSTATE_BLOCKED
    v.timer_deadline = now
    timers.fire(host, now)
    assert v.timer_deadline is None                 # single-shot: disarmed
    wakes = [e for e in host.trace.recent(5) if e.kind == "sched" and e.data["op"] == "wake"]
    assert wakes and wakes[-1].dom == v.domain.domid and wakes[-1].data["reason"] == "timer"


def test_a_periodic_timer_is_rearmed_one_period_on(env):
    host, g, h = env
    now = max(host.clock)
    _quiet(host, now)
    v = g.vcpu
    v.periodic_period = 1000
    v.timer_deadline = now - 5
    timers.fire(host, now)
    assert v.timer_deadline == now - 5 + 1000


def test_a_due_pit_raises_its_interrupt(env):
    host, g, h = env
    now = max(host.clock)
    _quiet(host, now)
    pit = h.dom.devices["vpit"]
    pit.running, pit.start_cycle, pit.fired = True, now - pit.period_cycles(), 0
    timers.fire(host, now)
    assert pit.fired == 1
    last = host.trace.recent(3)
    assert any(e.kind == "interrupt" and e.data["source"] == "vpit" and e.dom == h.dom.domid for e in last)
