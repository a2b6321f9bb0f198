"""Grant tables v1: the only way one domain reaches another's frame."""

from __future__ import annotations

import struct

import pytest

from lab.xen import abi
from lab.xen.abi.grant_table import (GNTCOPY_dest_gref, GNTCOPY_source_gref, GNTMAP_host_map,
                                     GNTMAP_readonly, GNTST_bad_copy_arg, GNTST_bad_gntref,
                                     GNTST_bad_handle, GNTST_general_error, GNTST_okay,
                                     GNTST_permission_denied, GTF_permit_access, GTF_reading,
                                     GTF_readonly, GTF_writing)
from lab.xen.hypercall_table import dispatch
from xen_helpers import two_pv_guests

pytestmark = pytest.mark.machine       # every test here boots a whole machine

DIRECT_MAP = 0xFFFF888000000000


@pytest.fixture()
def two_guests():
    return two_pv_guests()


def grant(host, granter, ref, to_domid, pfn, readonly=False):
    gt = host.grant_tables
    status, frames = gt.setup_table(granter.domid, 1)
    assert status == GNTST_okay
    flags = GTF_permit_access | (GTF_readonly if readonly else 0)
    host.mem.write((frames[0] << 12) + ref * 8, struct.pack("<HHI", flags, to_domid, granter.p2m[pfn]))
    return gt


def free_va(dom):
    """A direct-map page of the guest nothing uses (high in its memory)."""
    pfn = dom.mem_pages - 2
    return pfn, DIRECT_MAP + (pfn << 12)


def pte_of(host, dom, va):
    l1e = host.mm.pv.l1e_maddr_for_va(dom.vcpus[0].guest_table, va)
    return host.mem.read_u64(l1e)


def test_map_write_unmap_and_flags(two_guests):
    host, a, b = two_guests
    gt = grant(host, a, 8, b.domid, pfn=a.mem_pages - 3)
    target_mfn = a.p2m[a.mem_pages - 3]
    host.mem.write(target_mfn << 12, b"hello from A")
    vb = b.vcpus[0]
    _, va = free_va(b)
    status, handle, _ = gt.map(vb, va, GNTMAP_host_map, 8, a.domid)
    assert status == GNTST_okay
    assert (pte_of(host, b, va) >> 12) & 0xFFFFFFFFFF == target_mfn, "B's page table now points at A's frame"
    flags = struct.unpack("<H", host.mem.read(gt._entry_addr(a.domid, 8), 2))[0]
    assert flags & GTF_reading and flags & GTF_writing
    assert host.mm.pv.check_invariants() == []
    assert gt.unmap(vb, va, handle) == GNTST_okay
    assert pte_of(host, b, va) & 1 == 0
    flags = struct.unpack("<H", host.mem.read(gt._entry_addr(a.domid, 8), 2))[0]
    assert not flags & (GTF_reading | GTF_writing)
    assert gt.unmap(vb, va, handle) == GNTST_bad_handle


def test_read_only_grant_is_enforced(two_guests):
    """_set_status_v1(): "Attempt to write-pin a r/o grant entry" is GNTST_general_error."""
    host, a, b = two_guests
    gt = grant(host, a, 9, b.domid, pfn=a.mem_pages - 3, readonly=True)
    _, va = free_va(b)
    status, _, _ = gt.map(b.vcpus[0], va, GNTMAP_host_map, 9, a.domid)
    assert status == GNTST_general_error
    status, handle, _ = gt.map(b.vcpus[0], va, GNTMAP_host_map | GNTMAP_readonly, 9, a.domid)
    assert status == GNTST_okay
    assert not pte_of(host, b, va) & 2, "mapped without RW"


def test_grant_for_someone_else_or_revoked_does_not_work(two_guests):
    """_set_status_v1(): "Bad flags (%x) or dom (%d); expected d%d" is GNTST_general_error;
    map_grant_ref(): a ref past the table, or neither host nor device flag, GNTST_bad_gntref."""
    host, a, b = two_guests
    gt = grant(host, a, 10, 0, pfn=a.mem_pages - 3)            # granted to dom0, not to B
    _, va = free_va(b)
    assert gt.map(b.vcpus[0], va, GNTMAP_host_map, 10, a.domid)[0] == GNTST_general_error
    gt = grant(host, a, 11, b.domid, pfn=a.mem_pages - 3)
    host.mem.write(gt._entry_addr(a.domid, 11), b"\x00\x00")    # A revokes the grant
    assert gt.map(b.vcpus[0], va, GNTMAP_host_map, 11, a.domid)[0] == GNTST_general_error
    assert gt.map(b.vcpus[0], va, GNTMAP_host_map, 10_000, a.domid)[0] == GNTST_bad_gntref
    assert gt.map(b.vcpus[0], va, GNTMAP_readonly, 11, a.domid)[0] == GNTST_bad_gntref
    assert host.mm.pv.check_invariants() == []


def test_every_domain_has_a_grant_table_from_creation(two_guests):
    """common/grant_table.c grant_table_init() gives each domain INITIAL_NR_GRANT_FRAMES
    (asm/grant_table.h) at creation: a ref within that frame of a domain that never called
    GNTTABOP_setup_table is an entry without GTF_permit_access, GNTST_general_error
    (_set_status_v1); a ref beyond it is GNTST_bad_gntref ("Bad ref")."""
    host, a, b = two_guests
    gt = host.grant_tables
    assert a.domid not in gt.frames, "A never set up its table"
    _, va = free_va(b)
    pte = pte_of(host, b, va)
    assert gt.nr_frames(a.domid) == abi.INITIAL_NR_GRANT_FRAMES == 1
    assert gt.map(b.vcpus[0], va, GNTMAP_host_map, 8, a.domid)[0] == GNTST_general_error
    assert gt.map(b.vcpus[0], va, GNTMAP_host_map, 511, a.domid)[0] == GNTST_general_error
    assert gt.map(b.vcpus[0], va, GNTMAP_host_map, 512, a.domid)[0] == GNTST_bad_gntref
    assert any("Bad ref 0x200 for d" in line for line in host.dmesg)
    assert a.domid not in gt.frames and pte_of(host, b, va) == pte
    assert host.mm.pv.check_invariants() == []


def test_without_a_grant_another_domains_frame_cannot_be_mapped(two_guests):
    host, a, b = two_guests
    assert host.mm.pv.grant_ok == host.grant_tables.grant_ok      # mm asks Xen's grant tables
    _, va = free_va(b)
    val = (a.p2m[5] << 12) | 0x7
    assert host.mm.update_va_mapping(b.vcpus[0], va, val, abi.UVMF_INVLPG) < 0
    assert host.mm.pv.check_invariants() == []


def test_copy_through_a_grant_and_bounds(two_guests):
    host, a, b = two_guests
    gt = grant(host, a, 12, b.domid, pfn=a.mem_pages - 3)
    host.mem.write(a.p2m[a.mem_pages - 3] << 12, b"granted bytes")
    vb = b.vcpus[0]
    pfn, _ = free_va(b)
    status = gt.copy_one(vb, (12, a.domid, 0), (b.p2m[pfn], abi.DOMID_SELF, 100), 13, GNTCOPY_source_gref)
    assert status == GNTST_okay
    assert host.mem.read((b.p2m[pfn] << 12) + 100, 13) == b"granted bytes"
    assert gt.copy_one(vb, (12, a.domid, 4000), (b.p2m[pfn], abi.DOMID_SELF, 0), 200,
                       GNTCOPY_source_gref) == GNTST_bad_copy_arg
    # B may not name A's frame directly: only through the grant
    assert gt.copy_one(vb, (a.p2m[5], a.domid, 0), (b.p2m[pfn], abi.DOMID_SELF, 0), 8, 0) == GNTST_permission_denied
    assert gt.copy_one(vb, (b.p2m[pfn], abi.DOMID_SELF, 0), (12, a.domid, 0), 8, GNTCOPY_dest_gref) == GNTST_okay


def test_grant_table_op_from_the_hypercall_path(two_guests):
    host, a, b = two_guests
    va_ = a.vcpus[0]
    # query_size before setup_table: the one frame every domain has from creation
    # (grant_table_init(), INITIAL_NR_GRANT_FRAMES), max 64 (opt_max_grant_frames)
    buf = DIRECT_MAP + ((a.mem_pages - 4) << 12)
    from lab.xen.guestmem import copy_from_guest, copy_to_guest
    copy_to_guest(host, va_, buf, struct.pack("<HxxIIh", abi.DOMID_SELF, 0, 0, 0))
    assert dispatch(host, va_, 20, [abi.GNTTABOP_query_size, buf, 1]) == 0
    nr, mx, st = struct.unpack("<IIh", copy_from_guest(host, va_, buf + 4, 10))
    assert (nr, mx, st) == (1, 64, 0)
    ev = [e for e in host.trace.iter_all() if e.kind == "hypercall"][-1]
    assert ev.data["name"] == "grant_table_op" and ev.data["nr"] == 20
    assert dispatch(host, va_, 20, [99, buf, 1]) == -abi.ERRNO["ENOSYS"]
