"""Grant tables at their edges: each test pins down one rule whose loss the other tests would miss.

Where the lab's status code for a refusal may still move towards Xen's (the refusals Xen reports
as GNTST_general_error), a test asserts that the operation is refused and that nothing changed,
not the code itself.
"""

from __future__ import annotations

import struct

import pytest

from lab.xen import abi
from lab.xen.abi.grant_table import (GNTCOPY_dest_gref, GNTCOPY_source_gref, GNTMAP_host_map,
                                     GNTMAP_readonly, GNTST_bad_copy_arg, GNTST_general_error,
                                     GNTST_okay, GTF_reading, GTF_writing)
from test_grants import free_va, grant, pte_of
from xen_helpers import two_pv_guests

pytestmark = pytest.mark.machine


@pytest.fixture()
def two_guests():
    return two_pv_guests()

GNTTAB_MAX_FRAMES = 64          # Xen's default gnttab_max_frames (xen/common/grant_table.c)
PAGE = 4096


def entry_flags(host, gt, granter, ref) -> int:
    return struct.unpack("<H", host.mem.read(gt._entry_addr(granter.domid, ref), 2))[0]


def frame_of(pte: int) -> int:
    return (pte >> 12) & 0xFFFFFFFFFF


# ------------------------------------------------------------------ the table's size
def test_setup_table_stops_at_64_frames(two_guests):
    host, a, _b = two_guests
    gt = host.grant_tables
    status, frames = gt.setup_table(a.domid, GNTTAB_MAX_FRAMES)
    assert status == GNTST_okay and len(frames) == GNTTAB_MAX_FRAMES == len(set(frames))
    status, frames = gt.setup_table(a.domid, GNTTAB_MAX_FRAMES + 1)
    assert status != GNTST_okay and frames == []
    assert len(gt.frames[a.domid]) == GNTTAB_MAX_FRAMES, "a refused call grows nothing"
    assert gt.setup_table(a.domid, 0)[0] != GNTST_okay


def test_the_physmap_route_stops_at_the_same_limit(two_guests):
    host, a, _b = two_guests
    gt = host.grant_tables
    assert gt.frame_for_physmap(a.domid, GNTTAB_MAX_FRAMES) is None
    assert gt.frames.get(a.domid, []) == [], "nothing allocated for a refused index"
    last = gt.frame_for_physmap(a.domid, GNTTAB_MAX_FRAMES - 1)
    assert last is not None and len(gt.frames[a.domid]) == GNTTAB_MAX_FRAMES
    assert gt.frames[a.domid][-1] == last
    assert gt.frame_for_physmap(a.domid, GNTTAB_MAX_FRAMES) is None


# ------------------------------------------------------------------ who the granter is
def test_a_crashed_granter_cannot_be_mapped_from(two_guests):
    host, a, b = two_guests
    gt = grant(host, a, 8, b.domid, pfn=a.mem_pages - 3)
    before = entry_flags(host, gt, a, 8)
    host.crash(a, "crashed on purpose")
    assert a.domid in host.domains and not a.alive, "preserved, not destroyed"
    _, va = free_va(b)
    pte = pte_of(host, b, va)
    status, _, _ = gt.map(b.vcpus[0], va, GNTMAP_host_map, 8, a.domid)
    assert status != GNTST_okay
    assert pte_of(host, b, va) == pte, "nothing mapped"
    assert entry_flags(host, gt, a, 8) == before
    assert gt.maptrack.get(b.domid, {}) == {}
    assert gt.copy_one(b.vcpus[0], (8, a.domid, 0), (b.p2m[5], abi.DOMID_SELF, 0), 8,
                       GNTCOPY_source_gref) != GNTST_okay


# ------------------------------------------------------------------ two mappings of one grant
def test_two_mappings_of_one_grant_are_two_handles(two_guests):
    host, a, b = two_guests
    pfn = a.mem_pages - 3
    gt = grant(host, a, 8, b.domid, pfn=pfn)
    vb = b.vcpus[0]
    pfn_b, va1 = free_va(b)
    va2 = va1 - PAGE
    st1, h1, _ = gt.map(vb, va1, GNTMAP_host_map, 8, a.domid)
    st2, h2, _ = gt.map(vb, va2, GNTMAP_host_map | GNTMAP_readonly, 8, a.domid)
    assert (st1, st2) == (GNTST_okay, GNTST_okay) and h1 != h2
    assert frame_of(pte_of(host, b, va1)) == frame_of(pte_of(host, b, va2)) == a.p2m[pfn]
    assert host.mm.pv.check_invariants() == []
    # dropping the writable one leaves the read-only one: reading stays, writing goes
    assert gt.unmap(vb, va1, h1) == GNTST_okay
    flags = entry_flags(host, gt, a, 8)
    assert flags & GTF_reading and not flags & GTF_writing
    assert frame_of(pte_of(host, b, va2)) == a.p2m[pfn] and pte_of(host, b, va2) & 1
    slot2 = host.mm.pv.l1e_maddr_for_va(b.vcpus[0].guest_table, va2)
    slot1 = host.mm.pv.l1e_maddr_for_va(b.vcpus[0].guest_table, va1)
    assert gt.grant_ok(b.domid, a.p2m[pfn], False, slot2) and not gt.grant_ok(b.domid, a.p2m[pfn], True, slot2)
    assert not gt.grant_ok(b.domid, a.p2m[pfn], False, slot1), "only in the slot a live mapping wrote"
    assert gt.unmap(vb, va2, h2) == GNTST_okay
    assert not entry_flags(host, gt, a, 8) & (GTF_reading | GTF_writing)
    assert not gt.grant_ok(b.domid, a.p2m[pfn], False, slot2)
    assert host.mm.pv.check_invariants() == []


def test_two_writable_mappings_keep_writing_until_the_last_goes(two_guests):
    host, a, b = two_guests
    gt = grant(host, a, 9, b.domid, pfn=a.mem_pages - 3)
    vb = b.vcpus[0]
    _, va1 = free_va(b)
    va2 = va1 - PAGE
    _, h1, _ = gt.map(vb, va1, GNTMAP_host_map, 9, a.domid)
    _, h2, _ = gt.map(vb, va2, GNTMAP_host_map, 9, a.domid)
    assert gt.unmap(vb, va1, h1) == GNTST_okay
    assert entry_flags(host, gt, a, 9) & (GTF_reading | GTF_writing) == GTF_reading | GTF_writing
    assert gt.unmap(vb, va2, h2) == GNTST_okay
    assert entry_flags(host, gt, a, 9) & (GTF_reading | GTF_writing) == 0


# ------------------------------------------------------------------ unmapping at the wrong address
def test_unmap_at_the_wrong_address_changes_nothing(two_guests):
    host, a, b = two_guests
    pfn = a.mem_pages - 3
    gt = grant(host, a, 8, b.domid, pfn=pfn)
    vb = b.vcpus[0]
    _, va = free_va(b)
    status, handle, _ = gt.map(vb, va, GNTMAP_host_map, 8, a.domid)
    assert status == GNTST_okay
    pte = pte_of(host, b, va)
    flags = entry_flags(host, gt, a, 8)
    # replace_grant_pv_mapping(): "PTE entry ... doesn't match frame" is GNTST_general_error
    assert gt.unmap(vb, va - PAGE, handle) == GNTST_general_error
    assert pte_of(host, b, va) == pte and entry_flags(host, gt, a, 8) == flags
    assert handle in gt.maptrack[b.domid]
    assert host.mm.pv.check_invariants() == []
    assert gt.unmap(vb, va, handle) == GNTST_okay
    assert not pte_of(host, b, va) & 1


# ------------------------------------------------------------------ copies stay inside their frames
def test_a_copy_never_runs_into_the_next_frame(two_guests):
    host, a, b = two_guests
    pfn = a.mem_pages - 3
    gt = grant(host, a, 12, b.domid, pfn=pfn)
    vb = b.vcpus[0]
    pfn_b, _ = free_va(b)
    src, dst = a.p2m[pfn], b.p2m[pfn_b]
    host.mem.write(src << 12, bytes(range(256)) * 16)
    sentinel = b"\xAA" * PAGE
    for mfn in (src + 1, dst + 1):
        host.mem.write(mfn << 12, sentinel)
    # the destination would cross its frame's end
    assert gt.copy_one(vb, (12, a.domid, 0), (dst, abi.DOMID_SELF, PAGE - 100), 200,
                       GNTCOPY_source_gref) == GNTST_bad_copy_arg
    # the source would cross its frame's end
    assert gt.copy_one(vb, (dst, abi.DOMID_SELF, 0), (12, a.domid, PAGE - 100), 200,
                       GNTCOPY_dest_gref) == GNTST_bad_copy_arg
    assert gt.copy_one(vb, (12, a.domid, PAGE - 100), (dst, abi.DOMID_SELF, 0), 200,
                       GNTCOPY_source_gref) == GNTST_bad_copy_arg
    assert gt.copy_one(vb, (12, a.domid, 0), (dst, abi.DOMID_SELF, 0), PAGE + 1,
                       GNTCOPY_source_gref) == GNTST_bad_copy_arg
    # one byte too far, on either side
    assert gt.copy_one(vb, (12, a.domid, PAGE - 100), (dst, abi.DOMID_SELF, 0), 101,
                       GNTCOPY_source_gref) == GNTST_bad_copy_arg
    assert gt.copy_one(vb, (12, a.domid, 0), (dst, abi.DOMID_SELF, PAGE - 100), 101,
                       GNTCOPY_source_gref) == GNTST_bad_copy_arg
    assert host.mem.read((src + 1) << 12, PAGE) == sentinel
    assert host.mem.read((dst + 1) << 12, PAGE) == sentinel
    assert host.mem.read(dst << 12, PAGE) == bytes(PAGE), "a refused copy writes nothing"
    # exactly up to the end is fine, on both sides
    assert gt.copy_one(vb, (12, a.domid, PAGE - 100), (dst, abi.DOMID_SELF, PAGE - 100), 100,
                       GNTCOPY_source_gref) == GNTST_okay
    assert host.mem.read((dst << 12) + PAGE - 100, 100) == (bytes(range(256)) * 16)[-100:]
    assert gt.copy_one(vb, (12, a.domid, 0), (dst, abi.DOMID_SELF, 0), PAGE, GNTCOPY_source_gref) == GNTST_okay
    assert host.mem.read(dst << 12, PAGE) == bytes(range(256)) * 16
    assert host.mem.read((dst + 1) << 12, PAGE) == sentinel
