"""The local APIC timer Xen emulates for an HVM vCPU fires (hvm/vlapic.c, hvm/vpt.c).

The guest (tests/data/guests/hvm_lapic_timer.s) divides the bus clock by 1, runs a
one-shot count of 50,000 (500 us at APIC_BUS_CYCLE_NS = 10 ns) and sleeps in hlt
until its interrupt, then a periodic count of 20,000 (200 us) through five
interrupts, then a masked one-shot that must raise nothing. Expected numbers come
from Xen's rules: vlapic_update_timer() and vlapic_get_tmcct() for the counts,
create_periodic_time() for the first periodic tick (on a multiple of the period with
HVM_PARAM_VPT_ALIGN, which libxl sets unless xl.cfg says vpt_align = 0; otherwise half
a count later than the count's end, for the LAPIC source).
"""

from __future__ import annotations

import pytest

from xen_helpers import GUESTS, create, events, small_host

pytestmark = pytest.mark.machine

LAPIC = 0xFEE00000
APIC_TMICT = 0x380
HVM_PARAM_VPT_ALIGN = 16
APIC_BUS_CYCLE_NS = 10


class TimerGuest:
    def __init__(self, tmp_path, *, vpt_align: bool = True, run: bool = True) -> None:
        self.host, xl = small_host()
        self.dom = create(xl, tmp_path, "lt", "hvm", kernel=GUESTS / "hvm_lapic_timer.s", memory=16)
        if not vpt_align:
            self.dom.hvm_params[HVM_PARAM_VPT_ALIGN] = 0        # xl.cfg's vpt_align = 0
        self.sym = self.dom.images["kernel"].symbols
        if run:
            self.host.run(max_insns=2_000_000)

    def __getitem__(self, name: str) -> int:
        return self.word(name)

    def word(self, name: str, i: int = 0) -> int:
        gpa = self.sym[name] + 8 * i
        return self.host.mem.read_u64((self.dom.p2m[gpa >> 12] << 12) + (gpa & 0xFFF))

    def ns(self, cycles: int) -> int:
        return cycles * 1_000_000_000 // self.host.cpu_hz

    def cycles(self, ns: int) -> int:
        return ns * self.host.cpu_hz // 1_000_000_000

    def count_written(self) -> list[int]:
        """The cycles at which the guest wrote the initial count."""
        return [e.cycle for e in events(self.host, "mmio", dom=self.dom.domid, addr=LAPIC + APIC_TMICT, dir="out")]

    def raised(self, vector: int) -> list[int]:
        src = f"vLAPIC timer: vector {vector:#x} raised in the vLAPIC"
        return [e.cycle for e in events(self.host, "interrupt", dom=self.dom.domid, source=src)]

    def taken(self, vector: int) -> list[int]:
        return [e.cycle for e in events(self.host, "interrupt", dom=self.dom.domid, vector=vector, source="vlapic")]


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    return TimerGuest(tmp_path_factory.mktemp("lapic"))


def test_the_guest_runs_to_its_end_on_the_timers_interrupts(guest):
    assert guest.dom.state == "shutdown" and guest.dom.shutdown_reason == "poweroff"
    assert (guest["oneshots"], guest["periodics"], guest["masked"]) == (1, 5, 0)


def test_one_shot_wakes_hlt_when_the_count_runs_out(guest):
    armed = guest.count_written()[0]
    # 50,000 bus cycles of 10 ns, divided by 1: 500 us after the initial count was written
    due = guest.ns(armed) + 50_000 * APIC_BUS_CYCLE_NS
    (fired,) = guest.raised(0x40)
    assert guest.ns(fired) == due and guest.ns(fired - 1) < due
    assert guest.taken(0x40) == [fired]                    # hlt woke and took it at once
    assert 0 < guest["count_armed"] < 50_000               # counting down right after it was written
    assert guest["count_after"] == 0                       # a one-shot count stays at 0


def test_periodic_ticks_a_period_apart_and_its_count_reloads(guest):
    armed = guest.count_written()[1]
    period = 20_000 * APIC_BUS_CYCLE_NS
    fired = guest.raised(0x41)
    assert len(fired) == 5 and guest.taken(0x41) == fired
    # align_timer(): the first multiple of the period at or after the count's end
    due = guest.ns(armed) + period
    assert guest.ns(fired[0]) == -(-due // period) * period
    assert [guest.ns(b) - guest.ns(a) for a, b in zip(fired, fired[1:])] == [period] * 4
    ticks = [guest.word("tick_tsc", i) for i in range(5)]
    assert [b - a for a, b in zip(ticks, ticks[1:])] == [guest.cycles(period)] * 4
    assert 0 < guest["count_periodic"] <= 20_000           # vlapic_get_tmcct(): modulo the initial count


def test_a_masked_timer_raises_nothing(guest):
    assert guest.raised(0x42) == [] and guest.taken(0x42) == []
    assert guest["masked"] == 0 and not guest["irr_masked"] & (1 << (0x42 - 0x40))


def test_the_domain_is_built_with_vpt_align_as_libxl_builds_it(guest):
    assert guest.dom.hvm_params[HVM_PARAM_VPT_ALIGN] == 1


def test_without_vpt_align_the_first_periodic_tick_comes_half_a_count_late(tmp_path):
    g = TimerGuest(tmp_path, vpt_align=False)
    armed = g.count_written()[1]
    period = 20_000 * APIC_BUS_CYCLE_NS
    fired = g.raised(0x41)
    # create_periodic_time(): the LAPIC source's first tick is offset by half its delta
    assert g.ns(fired[0]) == g.ns(armed) + period + period // 2
    assert [g.ns(b) - g.ns(a) for a, b in zip(fired, fired[1:])] == [period] * 4


def test_the_timer_is_in_the_heap_and_saves_and_loads(tmp_path):
    g = TimerGuest(tmp_path, run=False)
    host, v = g.host, g.dom.vcpus[0]
    host.run(max_insns=2_000_000, stop=lambda: v.vlapic_timer is not None and v.blocked)
    armed = v.vlapic_timer
    assert armed is not None and host.next_deadline() == armed[0]
    snap = host.snapshot()
    host.run(max_insns=2_000_000)
    ticks = [g.word("tick_tsc", i) for i in range(5)]
    assert g.dom.state == "shutdown" and g["periodics"] == 5 and v.vlapic_timer != armed
    host.restore(snap)
    assert v.vlapic_timer == armed and host.next_deadline() == armed[0]
    assert g["oneshots"] == 0
    host.run(max_insns=2_000_000)
    assert [g.word("tick_tsc", i) for i in range(5)] == ticks and g["periodics"] == 5
