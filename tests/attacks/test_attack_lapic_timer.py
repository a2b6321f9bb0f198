"""A hostile HVM guest against its local APIC timer (xen/arch/x86/hvm/vlapic.c, vpt.c).

The guest (guests/hvm_lapic_timer_abuse.s) writes all ones to the divide
configuration, the initial count and LVT timer, counts of 0 and 1, vectors below
16, the TSC-deadline mode, and a periodic count of 1 (a 10 ns period) taken in hlt
twenty times, then disables its local APIC while that runs. Every step must answer
as Xen does and none may raise out of the simulator; a PV victim beside it is not
touched.
"""

from __future__ import annotations

import pytest

from attack_support import GUESTS, SCRIPT_GUESTS
from xen_helpers import events, frames_digest, frames_of, small_host, write_cfg

pytestmark = pytest.mark.machine

APIC_ESR_RECVILL = 0x40                        # apicdef.h
PT_MIN_PERIOD_NS = 100_000                     # vpt.c create_periodic_time(): at least 0.1 ms


@pytest.fixture(scope="module")
def abused(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("lapic_abuse")
    host, xl = small_host(ept=True)
    victim = xl.create(write_cfg(tmp_path, "victim", "pv", SCRIPT_GUESTS / "pv_script.s", memory=16), paused=True)
    dom = xl.create(write_cfg(tmp_path, "abuser", "hvm", GUESTS / "hvm_lapic_timer_abuse.s", memory=16))
    before = frames_digest(host, frames_of(victim))
    host.run(3_000_000)
    sym = dom.images["kernel"].symbols

    def rd(name: str, i: int = 0) -> int:
        gpa = sym[name] + 8 * i
        return host.mem.read_u64((dom.p2m[gpa >> 12] << 12) + (gpa & 0xFFF))
    return host, dom, victim, before, rd


def test_absurd_counts_and_divides_answer_as_xen_does(abused):
    host, dom, victim, before, rd = abused
    assert rd("done") == 1 and dom.state == "shutdown" and dom.shutdown_reason == "poweroff"
    assert rd("results", 0) == 0xB                          # TDCR keeps APIC_TDR_DIV_MASK: divide by 1
    assert 0 < rd("results", 1) < 0xFFFF_FFFF               # counting down from all ones
    assert rd("results", 2) == 0                            # an initial count of 0 stops it
    assert rd("results", 10) == 0x710FF                     # all ones: masked, mode 3, vector 0xff kept
    assert rd("results", 11) == 0 and rd("results", 12) == 0   # a reserved mode has no count
    assert rd("results", 13) == 0                           # TSC-deadline: the initial count is not written


def test_a_vector_below_16_is_refused_with_receive_illegal_vector(abused):
    """vlapic_set_irq(): !APIC_VECTOR_VALID(vec) is vlapic_error(RECVILL), nothing in the IRR;
    vlapic_error() raises LVT error's vector when it is unmasked and valid, and folds
    RECVILL in when it is not; the ESR reads what the last write latched."""
    host, dom, victim, before, rd = abused
    assert rd("results", 3) == 0                            # not latched before a write
    assert rd("results", 4) == APIC_ESR_RECVILL
    assert rd("results", 5) & ((1 << 5) | (1 << 7)) == 0    # IRR: neither vector 5 nor 7 raised
    assert rd("results", 6) == 0                            # a second write: no new error
    assert rd("results", 7) == APIC_ESR_RECVILL             # LVT error with vector 3: folded in
    assert rd("results", 8) == 1 << (0x51 - 0x40)           # LVT error's vector 0x51 in IRR[2]
    assert rd("results", 9) == APIC_ESR_RECVILL
    assert rd("errors") == 1                                # and taken once IF was set
    raised = {e.data["vector"] for e in events(host, "interrupt", dom=dom.domid)
              if str(e.data["source"]).startswith("vLAPIC")}
    assert raised == {0x30, 0x51}


def test_a_tiny_period_is_stretched_to_a_tenth_of_a_millisecond(abused):
    host, dom, victim, before, rd = abused
    assert rd("results", 14) == 20 and rd("ticks") == 20
    fired = [e.cycle for e in events(host, "interrupt", dom=dom.domid, vector=0x30)
             if str(e.data["source"]).startswith("vLAPIC timer")]
    ns = [c * 1_000_000_000 // host.cpu_hz for c in fired]
    assert len(ns) == 20
    # align_timer() (vpt_align, libxl's default): every tick on a multiple of the period, each
    # waking the vCPU from hlt a period after the last
    assert all(t % PT_MIN_PERIOD_NS == 0 for t in ns)
    assert [b - a for a, b in zip(ns, ns[1:])] == [PT_MIN_PERIOD_NS] * 19
    assert rd("last_tick") - rd("first_tick") >= 19 * PT_MIN_PERIOD_NS * host.cpu_hz // 1_000_000_000 - 5_000


def test_the_software_disable_stops_the_ticks_and_nobody_else_is_touched(abused):
    host, dom, victim, before, rd = abused
    assert rd("results", 15) == rd("results", 14) == 20     # SVR bit 8 clear masks LVT timer
    assert dom.vcpus[0].vlapic_timer is None
    assert len(host.timers) < 64                            # no heap growth from the 10 ns period
    assert frames_digest(host, frames_of(victim)) == before
    assert host.domains[0].alive and victim.alive
    assert host.mm.pv.check_invariants() == []
