"""Classes 1 and 2: writes that skip Xen's type rules, and references not held while a frame is used.

Each attack names the Xen source whose rule refuses it.
"""

from __future__ import annotations

import struct

import pytest

from attack_support import DIRECT_MAP, SCRIPT_GUESTS, Arena
from lab.xen import abi
from lab.xen.abi.grant_table import (GNTMAP_host_map, GNTST_general_error, GNTST_okay)
from xen_helpers import OP_STORE, PTE_RW, entry_maddr, frames_of, write_cfg

pytestmark = pytest.mark.machine       # every test here boots a whole machine

GNTTABOP_copy, GNTTABOP_map_grant_ref, GNTTABOP_unmap_grant_ref = 5, 0, 1
MMUEXT_PIN_L1_TABLE = 0
UVMF_INVLPG = 2


def page_tables(host, dom, level: int = abi.PGT_l1_page_table) -> list[int]:
    pages = host.mm.pv.pages
    return [m for m in sorted(frames_of(dom)) if pages[m].type == level and pages[m].type_count]


@pytest.fixture
def arena(tmp_path):
    return Arena(tmp_path)


# ---------------------------------------------------------------- class 1
def test_grant_copy_into_the_callers_own_page_table(arena):
    """gnttab_copy_claim_buf(): the destination needs get_page_type(PGT_writable_page);
    a page table cannot be writable: "Could not get writable frame", GNTST_general_error.
    The attacker is a kernel in the lab's ISA making the call from its script."""
    g = arena.pv
    l1 = page_tables(arena.host, g.dom)[0]
    table_before = arena.host.mem.read(l1 << 12, 4096)
    forged = (arena.victim.dom.p2m[0] << 12) | 0x67          # an entry mapping the victim, RW
    g.write(g.buf(512), struct.pack("<Q", forged))
    src = g.dom.p2m[(g.buf(512) - DIRECT_MAP) >> 12]
    g.write(g.buf(), struct.pack("<QHH4xQHH4xHH", src, abi.DOMID_SELF, (g.buf(512) & 0xFFF), l1,
                                 abi.DOMID_SELF, 8, 8, 0))
    i = g.add("grant_table_op", GNTTABOP_copy, g.buf(), 1)
    arena.run(g)
    assert g.steps_done == 1 and g.result(i) == 0
    assert struct.unpack("<h", g.read(g.buf(36), 2))[0] == GNTST_general_error
    assert arena.host.mem.read(l1 << 12, 4096) == table_before
    assert any("Could not get writable frame" in line for line in arena.host.dmesg)
    arena.untouched()


@pytest.mark.parametrize("ring", ["store", "console"])
def test_a_ring_dom0_serves_cannot_become_a_page_table(arena, ring):
    """xenstored and xenconsoled map the ring page as a foreign mapping, which holds a writable
    type reference (mm.c, get_page_from_l1e): pinning it as an L1 table is "Bad type", -EINVAL,
    so the daemon can never write a reply into a page table."""
    g = arena.pv
    pfn = g.dom.store_pfn if ring == "store" else g.dom.console_pfn
    mfn = g.dom.p2m[pfn]
    va = DIRECT_MAP + (pfn << 12)
    pte = arena.host.mem.read_u64(entry_maddr(arena.host, g.vcpu.guest_table, va))
    g.add(OP_STORE, va + 2064, 0)                           # clear the one non-zero word: a valid, empty L1
    g.add("update_va_mapping", va, pte & ~PTE_RW, UVMF_INVLPG)      # drop its own writable view
    g.write(g.buf(), struct.pack("<I4xQQ", MMUEXT_PIN_L1_TABLE, mfn, 0))
    pin = g.add("mmuext_op", g.buf(), 1, 0, abi.DOMID_SELF)
    arena.run(g, limit=8_000_000)
    assert g.result(pin) & (1 << 64) - 1 == (-abi.ERRNO["EINVAL"]) & (1 << 64) - 1
    assert arena.host.mm.pv.pages[mfn].type == abi.PGT_writable_page
    assert any("Bad type" in line for line in arena.host.dmesg)
    arena.untouched()


def test_blkback_cannot_write_disk_data_into_a_granted_page_table(tmp_path):
    """map_grant_ref(): blkback's writable device mapping takes get_page_type(PGT_writable_page),
    which a page table refuses ("Could not pin grant frame", GNTST_general_error): the READ fails
    and the table is untouched."""
    from test_blkback import ERROR, READ, connected
    host, xl, g, fe, img = connected(tmp_path)
    l1 = page_tables(host, g.dom)[0]
    before = host.mem.read(l1 << 12, 4096)
    ref = g.grant(frame=l1)
    assert fe.io(READ, 0, [(ref, 0, 7)], rid=5) == (5, READ, ERROR)
    assert host.mem.read(l1 << 12, 4096) == before
    assert "GNTST_general_error" in host.domains[0].console_output
    assert host.mm.pv.check_invariants() == []


# ---------------------------------------------------------------- class 2
def _refs(host, mfn: int) -> tuple[int, int]:
    pg = host.mm.pv.pages[mfn]
    return pg.count, pg.type_count


def _map_victim_page(arena):
    """The victim grants one of its pages to the PV attacker, who maps it at a direct-map address."""
    victim, g = arena.victim, arena.pv
    vmfn = victim.dom.p2m[victim.dom.mem_pages - 5]
    arena.base_refs = _refs(arena.host, vmfn)
    arena.grant(victim, 8, g.dom.domid, vmfn)
    pfn = g.dom.mem_pages - 4
    host_addr = DIRECT_MAP + (pfn << 12)
    g.write(g.buf(), struct.pack("<QIIH", host_addr, GNTMAP_host_map, 8, victim.dom.domid))
    assert arena.call(g, "grant_table_op", GNTTABOP_map_grant_ref, g.buf(), 1) == 0
    status, handle = struct.unpack("<hI", g.read(g.buf(18), 6))
    assert status == GNTST_okay
    return vmfn, host_addr, handle


def test_a_granted_frame_reaches_only_the_slot_the_grant_wrote(arena):
    """mm.c get_page_from_l1e(): a plain mmu_update naming another domain's frame is refused
    (-EBUSY after "pg_owner ... but real_pg_owner"), even while a grant maps that frame: only the
    grant code installs a foreign entry, in the one slot it was given."""
    g, host = arena.pv, arena.host
    vmfn, host_addr, handle = _map_victim_page(arena)
    l4 = g.vcpu.guest_table
    grant_slot = entry_maddr(host, l4, host_addr)
    copy_slot = entry_maddr(host, l4, host_addr - 4096)
    value = host.mem.read_u64(grant_slot)
    assert (value >> 12) & 0xFF_FFFF_FFFF == vmfn
    g.write(g.buf(), struct.pack("<QQ", copy_slot, value))
    assert arena.call(g, "mmu_update", g.buf(), 1, 0, abi.DOMID_SELF) == -abi.ERRNO["EBUSY"]
    assert (host.mem.read_u64(copy_slot) >> 12) & 0xFF_FFFF_FFFF != vmfn
    g.write(g.buf(), struct.pack("<QQI", host_addr, 0, handle))
    assert arena.call(g, "grant_table_op", GNTTABOP_unmap_grant_ref, g.buf(), 1) == 0
    assert struct.unpack("<h", g.read(g.buf(20), 2))[0] == GNTST_okay
    assert not host.mem.read_u64(grant_slot) & 1
    assert _refs(host, vmfn) == arena.base_refs, "the mapping's references went with it"
    arena.untouched()


def test_an_unmap_that_does_not_match_leaves_the_grant_busy(arena):
    """replace_grant_pv_mapping(): "PTE entry ... doesn't match frame" is GNTST_general_error; the
    mapping and its references stay (the grant stays busy: GTF_reading|GTF_writing) until the
    attacker's domain is destroyed, when gnttab_release_mappings() lets them go."""
    g, host = arena.pv, arena.host
    vmfn, host_addr, handle = _map_victim_page(arena)
    slot = entry_maddr(host, g.vcpu.guest_table, host_addr)
    g.write(g.buf(), struct.pack("<QQ", slot, 0))             # zap the grant entry behind Xen's back
    assert arena.call(g, "mmu_update", g.buf(), 1, 0, abi.DOMID_SELF) == 0
    g.write(g.buf(), struct.pack("<QQI", host_addr, 0, handle))
    assert arena.call(g, "grant_table_op", GNTTABOP_unmap_grant_ref, g.buf(), 1) == 0
    assert struct.unpack("<h", g.read(g.buf(20), 2))[0] == GNTST_general_error
    gt = host.grant_tables
    flags = gt.read_entry(arena.victim.dom.domid, 8)[0]
    assert flags & 0x18 == 0x18, "GTF_reading and GTF_writing: the grant is still in use"
    count, types = arena.base_refs
    assert _refs(host, vmfn) == (count + 1, types + 1), "the mapping still holds its references"
    assert host.mm.pv.check_invariants() == []
    arena.xl.destroy(g.dom.name)
    assert gt.read_entry(arena.victim.dom.domid, 8)[0] & 0x18 == 0
    assert _refs(host, vmfn) == arena.base_refs
    arena.untouched()


def test_a_frame_given_back_while_mapped_is_not_handed_to_the_next_domain(arena):
    """guest_remove_page(): the allocation reference goes, but the frame is freed only when the
    last reference does; dom0's mapping still holds one, so a domain created meanwhile can never
    get it (no use after free across domains)."""
    host, h = arena.host, arena.hvm
    gfn = 0x500
    mfn = h.dom.p2m[gfn]
    arena.grant(h, 9, 0, gfn)
    gt = host.grant_tables
    dom0 = host.domains[0].vcpus[0]
    status, handle, _ = gt.map_for_service(dom0, h.dom.domid, 9, False)
    assert status == GNTST_okay
    page = gt.frame_of(0, handle)
    # The HVM guest puts its shared_info over that gfn: the RAM page is "freed".
    h.write(h.buf(), struct.pack("<HHIQQ", abi.DOMID_SELF, 0, abi.XENMAPSPACE_shared_info, 0, gfn))
    assert arena.call(h, "memory_op", abi.XENMEM_add_to_physmap, h.buf()) == 0
    assert h.dom.gfn_to_mfn(gfn) != mfn and mfn not in host.free_frames
    newcomer = arena.xl.create(_cfg(arena, "newcomer"), paused=True)
    assert mfn not in frames_of(newcomer)
    page.write(0, b"dom0 still writes here")                 # harmless: the frame is nobody else's
    assert gt.unmap(dom0, 0, handle) == GNTST_okay
    assert mfn in host.free_frames and host.mem.read(mfn << 12, 32) == bytes(32), "freed, and wiped"
    assert host.mm.pv.check_invariants() == []
    arena.untouched()


def test_xenstored_never_writes_into_a_ring_page_the_guest_gave_back(arena):
    """The store ring stays held by xenstored's mapping while the connection lives: a guest that
    gives the page back cannot make xenstored write into the next domain's memory."""
    host, h = arena.host, arena.hvm
    gfn = h.dom.store_pfn
    mfn = h.dom.p2m[gfn]
    h.write(h.buf(), struct.pack("<HHIQQ", abi.DOMID_SELF, 0, abi.XENMAPSPACE_shared_info, 0, gfn))
    assert arena.call(h, "memory_op", abi.XENMEM_add_to_physmap, h.buf()) == 0
    newcomer = arena.xl.create(_cfg(arena, "newcomer"), paused=True)
    assert mfn not in frames_of(newcomer)
    arena.xl.destroy(h.dom.name)
    assert mfn in host.free_frames, "released with the connection, then freed"
    assert host.mm.pv.check_invariants() == []
    arena.untouched()


def _cfg(arena, name: str):
    return write_cfg(arena.tmp, name, "pv", SCRIPT_GUESTS / "pv_script.s", memory=16)
