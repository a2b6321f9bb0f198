"""A hostile HVM guest touches guest-physical memory it has no RAM for.

Xen (arch/x86/hvm/hvm.c hvm_hap_nested_page_fault(); arch/x86/mm/shadow/multi.c
sh_page_fault() under shadow paging) treats such a gfn as p2m_mmio_dm and emulates the
access (handle_mmio(), arch/x86/hvm/emulate.c): a range a device model registered goes to
it as an ioreq (common/ioreq.c ioreq_server_select()), anything else to Xen's null_handler,
which reads all ones and drops writes. Rep strings are clipped to 4096 repetitions per
emulation (hvmemul_linear_to_phys()). The guest runs on; only a fetch of instructions from
such memory (no instruction there: #UD) ends it, here as a triple fault since it has no IDT.
Nothing outside the guest changes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from attack_support import GUESTS, SCRIPT_GUESTS
from lab.xen.paging_pool import pool_of
from xen_helpers import events, frames_digest, frames_of, small_host, write_cfg

pytestmark = pytest.mark.machine

ONES = 0xFFFF_FFFF_FFFF_FFFF


def _run(tmp_path: Path, hap: int):
    host, xl = small_host(ept=bool(hap))
    victim = xl.create(write_cfg(tmp_path, "victim", "pv", SCRIPT_GUESTS / "pv_script.s", memory=16), paused=True)
    dom = xl.create(write_cfg(tmp_path, f"prober-{hap}", "hvm", GUESTS / "hvm_mmio_prober.s", memory=16, hap=hap))
    before = (frames_digest(host, frames_of(victim)), len(host.free_frames))
    host.run(3_000_000)
    sym = dom.images["kernel"].symbols

    def rd(gpa: int) -> int:
        return host.mem.read_u64((dom.p2m[gpa >> 12] << 12) + (gpa & 0xFFF))
    return host, xl, dom, victim, before, sym, rd


@pytest.mark.parametrize("hap", [1, 0], ids=["ept", "shadow"])
def test_mmio_and_unpopulated_gfns_are_emulated_as_xen_does_and_touch_nobody(tmp_path, hap):
    """hvm.c hvm_hap_nested_page_fault() / shadow/multi.c sh_page_fault() -> handle_mmio();
    emulate.c null_handler for what no ioreq server claims; xen_platform.c platform_mmio_read()
    (QEMU answers 0) for the platform device's BAR; emulate.c's 4096-repetition clip."""
    host, xl, dom, victim, before, sym, rd = _run(tmp_path, hap)
    res = sym["results"]
    got = [rd(res + 8 * i) for i in range(9)]
    assert got == [ONES, ONES,          # past its RAM: all ones, the write in between dropped
                   0xFF, 0xFFFF_FFFF,   # a byte and a dword of it
                   0,                   # QEMU's platform BAR reads 0
                   0x00050014,          # the local APIC page: Xen's vLAPIC version register (vlapic.c)
                   ONES, ONES,          # 32 GiB, and the top of a 48-bit space
                   0]                   # rep movsq's rcx after all four elements
    assert [rd(sym["copy_buf"] + 8 * i) for i in range(4)] == [ONES] * 4
    assert rd(sym["probes_done"]) == 1

    # Every access is an mmio event; the platform BAR's two went to QEMU as ioreqs.
    mmio = events(host, "mmio", dom=dom.domid)
    null = [e for e in mmio if e.data["device"].startswith("none")]
    assert {e.data["addr"] for e in null} >= {0x4000000, 0x4000003, 0x400000C, 0x800000000, 0xFFFFFFFFF008}
    stos = [e.data.get("count", 1) for e in null if e.data["dir"] == "out" and e.data["value"] == 0x3333]
    assert stos == [4096, 4096, 4096, 5], "rep stosq clipped to 4096 elements per emulation"
    copies = events(host, "ioreq", dom=dom.domid, type="IOREQ_TYPE_COPY", state="STATE_IOREQ_READY")
    assert [(e.data["addr"], e.data["dir"]) for e in copies] == [(0xF0000020, "out"), (0xF0000020, "in")]
    answers = events(host, "ioreq", dom=dom.domid, type="IOREQ_TYPE_COPY", state="STATE_IORESP_READY")
    assert [e.data["value"] for e in answers] == [0x1111, 0]

    # The fetch from MMIO: #UD, and with no IDT, a triple fault crashes only this guest.
    traps = [e.data for e in events(host, "trap", dom=dom.domid)]
    assert traps[0]["mnemonic"] == "#UD" and "instruction fetch from gpa 0x4000000" in traps[0]["reason"]
    assert dom.state == "crashed" and dom.crash_reason.startswith("triple fault")

    # Nobody else was touched: the victim's memory, the free pool, dom0, Xen's bookkeeping.
    after = (frames_digest(host, frames_of(victim)), len(host.free_frames))
    assert after[0] == before[0]
    # frames leave the free pool only for the guest's own paging pool (its shadows), within its size
    assert 0 <= before[1] - after[1] <= pool_of(host, dom).pages
    assert host.domains[0].alive and victim.alive
    assert host.mm.pv.check_invariants() == []
