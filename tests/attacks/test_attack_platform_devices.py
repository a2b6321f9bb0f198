"""A hostile HVM guest against the devices Xen emulates itself.

Xen emulates an HVM guest's local APIC (arch/x86/hvm/vlapic.c), IO-APIC (vioapic.c),
HPET (hpet.c), PICs and ELCR (vpic.c), PIT speaker port (emul-i8254.c) and RTC (rtc.c)
inside the hypervisor, found through the domain's intercept table (hvm/intercept.c)
before any ioreq reaches the device model. The guest reads what Xen's handlers answer,
sprays every byte of the three MMIO pages and the ports with all ones (read-only,
reserved and unmodelled registers included: the host must not raise), and ends with a
quadword that starts in the IO-APIC's 256 bytes and ends past them, which
hvm_mmio_accept() answers with domain_crash(). Nobody else is touched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from attack_support import GUESTS, SCRIPT_GUESTS
from xen_helpers import events, frames_digest, frames_of, small_host, write_cfg

pytestmark = pytest.mark.machine
ONES32 = 0xFFFF_FFFF


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    tmp_path: Path = tmp_path_factory.mktemp("platform")
    host, xl = small_host(ept=True)
    victim = xl.create(write_cfg(tmp_path, "victim", "pv", SCRIPT_GUESTS / "pv_script.s", memory=16), paused=True)
    dom = xl.create(write_cfg(tmp_path, "prober", "hvm", GUESTS / "hvm_platform_prober.s", memory=16))
    before = frames_digest(host, frames_of(victim))
    host.run(3_000_000)
    sym = dom.images["kernel"].symbols

    def rd(name: str, i: int = 0) -> int:
        gpa = sym[name] + 8 * i
        return host.mem.read_u64((dom.p2m[gpa >> 12] << 12) + (gpa & 0xFFF))
    return host, dom, victim, before, rd


def test_vlapic_registers_read_as_xen_has_them(probed):
    """vlapic.c: vlapic_reset() (ID = vcpu_id * 2 << 24, SVR 0xff, LVTs masked), VLAPIC_VERSION,
    vlapic_reg_write()'s masks, vlapic_get_tmcct(), vlapic_mmio_read()'s size and range rules."""
    host, dom, victim, before, rd = probed
    r = [rd("results", i) for i in range(13)]
    assert r[0] == 0 and r[1] == 0x0005_0014
    assert r[2] == 0x78                                   # TPR: val & 0xff
    assert r[3] == 0xFF and r[4] == 0x1FF                 # SVR after reset, then enabled
    assert r[5] == 0x1_0000                               # LVT timer masked after reset
    assert r[6] == 0x2_0030                               # LVT timer: LVT_MASK | APIC_TIMER_MODE_MASK kept
    assert r[7] == 0xB and r[8] == 1_000_000              # divide by 1; initial count
    assert 0 < r[9] < 1_000_000                           # the current count runs down with guest time
    assert r[10] == 0                                     # past APIC_TDCR: 0
    assert r[11] == 0x14                                  # a byte of the version register
    assert r[12] == 0                                     # a quadword: wider than one register


def test_vioapic_and_hpet_read_as_xen_has_them(probed):
    """vioapic.c vioapic_read_indirect() (VIOAPIC_VERSION_ID 0x11, 48 pins; read-only RTE bits;
    an undefined selector reads 0); hpet.c hpet_set() capability, comparator, main counter,
    hpet_check_access_length()."""
    host, dom, victim, before, rd = probed
    assert rd("results", 13) == 0x002F_0011
    assert rd("results", 14) == 0x1_0000                  # entry 0 masked after reset
    assert rd("results", 15) == 0x31                      # delivery status and remote IRR not written
    assert rd("results", 16) == 0 and rd("results", 17) == 0
    assert rd("results", 18) == 0x00F4_2400_8086_A201     # 16,000,000 fs per tick, 3 timers, 64-bit, legacy
    assert rd("results", 19) == 0x12345
    first, second = rd("results", 20), rd("results", 21)
    assert 0 <= first < second                            # the main counter runs once enabled
    assert rd("results", 22) == ONES32                    # misaligned: all ones


def test_legacy_ports_answer_as_xen_does(probed):
    """vpic.c (slave IMR, vpic_intercept_elcr_io()'s masks, byte accesses only), emul-i8254.c
    speaker_ioport_read(), rtc.c registers B and D after rtc_init() and CMOS memory past
    RTC_CMOS_SIZE left to the device model."""
    host, dom, victim, before, rd = probed
    assert rd("results", 23) == 0x5A
    assert rd("results", 24) == 0xDEF8                    # master 0xf8 (IRQs 0-2 edge), slave 0xde
    assert rd("results", 25) == 0x03
    assert rd("results", 26) == 0x02 and rd("results", 27) == 0x80
    assert rd("results", 28) == 0xFF
    assert rd("results", 29) == 0xFFFF
    io = {(e.data["port"], e.data["dir"]): e.data for e in events(host, "ioport", dom=dom.domid)}
    assert io[(0xA1, "in")]["emulator"] == "xen" and io[(0xA1, "in")]["device"].startswith("vPIC")
    assert io[(0x71, "in")]["emulator"] == "xen"


def test_the_spray_and_the_straddling_access_crash_only_the_prober(probed):
    """intercept.c hvm_mmio_accept(): a handler that takes an access's first byte but not its
    last crashes the domain; everything else the spray wrote was absorbed by Xen's handlers."""
    host, dom, victim, before, rd = probed
    assert rd("spray_done") == 1
    assert dom.state == "crashed" and "crosses the end of its MMIO range" in dom.crash_reason
    mmio = events(host, "mmio", dom=dom.domid)
    assert {e.data["emulator"] for e in mmio} == {"xen"}
    devices = {e.data["device"].split(":")[0] for e in mmio}
    assert devices == {"vLAPIC (in Xen", "vIOAPIC (in Xen", "vHPET (in Xen"}
    # a run of one register's bytes is one event with its count, as Xen's rep emulation is one ioreq
    assert any(e.data.get("count", 1) > 1 for e in mmio)
    assert frames_digest(host, frames_of(victim)) == before
    assert host.domains[0].alive and victim.alive
    assert host.mm.pv.check_invariants() == []


def test_the_task_priority_holds_back_local_apic_vectors_of_its_class_and_below(tmp_path):
    """hvm/hvm.c hvm_interrupt_blocked(): a vLAPIC vector whose priority class is not above the
    TPR's waits (hvm_intblk_tpr); vlapic.c vlapic_reg_write(APIC_TASKPRI) keeps the low byte."""
    host, xl = small_host(ept=True)
    dom = xl.create(write_cfg(tmp_path, "tpr", "hvm", SCRIPT_GUESTS / "hvm_script.s", memory=16), paused=True)
    v = dom.vcpus[0]
    vlapic = dom.devices["vlapic"]
    v.lapic_irr |= 1 << 0x93
    assert v.cpu.irq_source.pending() == 0x93
    vlapic.write(host, v, 0xFEE00080, 4, 0x1_0090)        # TPR class 9: 0x93 waits
    assert vlapic.read(host, v, 0xFEE00080, 4) == 0x90
    assert v.cpu.irq_source.pending() is None
    vlapic.write(host, v, 0xFEE00080, 1, 0x80)            # a byte write: class 8 lets it through
    assert v.cpu.irq_source.pending() == 0x93
