"""GNTTABOP_* as a guest issues them: the argument structs written into guest memory, in arrays, in the
layouts of Xen's public/grant_table.h, read back from memory after the hypercall.

The offsets below are written out from the header (x86-64), not taken from ``lab.xen.grant``:

    struct gnttab_setup_table   { domid_t dom; uint32_t nr_frames; int16_t status;
                                  XEN_GUEST_HANDLE(xen_pfn_t) frame_list; }            /* 24 bytes */
    struct gnttab_query_size    { domid_t dom; uint32_t nr_frames; uint32_t max_nr_frames;
                                  int16_t status; }                                    /* 16 bytes */
    struct gnttab_map_grant_ref { uint64_t host_addr; uint32_t flags; grant_ref_t ref; domid_t dom;
                                  int16_t status; grant_handle_t handle; uint64_t dev_bus_addr; }  /* 32 */
    struct gnttab_unmap_grant_ref { uint64_t host_addr; uint64_t dev_bus_addr; grant_handle_t handle;
                                    int16_t status; }                                  /* 24 bytes */
    struct gnttab_copy { struct { union { grant_ref_t ref; xen_pfn_t gmfn; } u; domid_t domid;
                                  uint16_t offset; } source, dest;
                         uint16_t len; uint16_t flags; int16_t status; }               /* 40 bytes */
"""

from __future__ import annotations

import struct

import pytest

from test_grants import DIRECT_MAP, free_va, grant, pte_of
from xen_helpers import hypercall, two_pv_guests

pytestmark = pytest.mark.machine


@pytest.fixture()
def two_guests():
    return two_pv_guests()

GNTTABOP_map_grant_ref, GNTTABOP_unmap_grant_ref, GNTTABOP_setup_table = 0, 1, 2
GNTTABOP_copy, GNTTABOP_query_size = 5, 6
GNTMAP_device_map, GNTMAP_host_map, GNTMAP_readonly = 1, 2, 4
GNTCOPY_source_gref, GNTCOPY_dest_gref = 1, 2
GTF_permit_access, GTF_readonly, GTF_reading, GTF_writing = 1, 4, 8, 0x10
GNTST_okay, GNTST_bad_domain, GNTST_bad_gntref, GNTST_bad_handle = 0, -2, -3, -4
GNTST_bad_copy_arg = -10
DOMID_SELF = 0x7FF0
INVALID_HANDLE = 0xFFFFFFFF

MAP_SIZE, UNMAP_SIZE, COPY_SIZE = 32, 24, 40


class GuestBuffer:
    """A page of a PV guest's memory (through its direct map), written and read as the guest would."""

    def __init__(self, host, dom, pfn: int) -> None:
        self.host, self.dom = host, dom
        self.mfn = dom.p2m[pfn]
        self.va = DIRECT_MAP + (pfn << 12)

    def write(self, offset: int, data: bytes) -> None:
        self.host.mem.write((self.mfn << 12) + offset, data)

    def read(self, offset: int, n: int) -> bytes:
        return self.host.mem.read((self.mfn << 12) + offset, n)

    def s16(self, offset: int) -> int:
        return struct.unpack("<h", self.read(offset, 2))[0]

    def u32(self, offset: int) -> int:
        return struct.unpack("<I", self.read(offset, 4))[0]

    def u64(self, offset: int) -> int:
        return struct.unpack("<Q", self.read(offset, 8))[0]


def gnttab_op(host, dom, cmd: int, buf: GuestBuffer, count: int) -> int:
    return hypercall(host, dom.vcpus[0], "grant_table_op", cmd, buf.va, count)


def map_op(host_addr: int, flags: int, ref: int, dom: int) -> bytes:
    # outputs pre-filled with junk, so a field the hypercall forgets to write shows
    op = struct.pack("<QIIHhIQ", host_addr, flags, ref, dom, 0x5A5A, 0x5A5A5A5A, 0x5A5A5A5A5A5A5A5A)
    assert len(op) == MAP_SIZE
    return op


def unmap_op(host_addr: int, handle: int) -> bytes:
    op = struct.pack("<QQIh2x", host_addr, 0, handle, 0x5A5A)
    assert len(op) == UNMAP_SIZE
    return op


def copy_op(src: tuple[int, int, int], dst: tuple[int, int, int], length: int, flags: int) -> bytes:
    op = struct.pack("<QHH4xQHH4xHHh2x", *src, *dst, length, flags, 0x5A5A)
    assert len(op) == COPY_SIZE
    return op


@pytest.fixture()
def granted(two_guests):
    """A grants B its page ``pfn`` as ref 8 (writable) and ref 9 (read-only)."""
    host, a, b = two_guests
    pfn = a.mem_pages - 3
    gt = grant(host, a, 8, b.domid, pfn=pfn)
    grant(host, a, 9, b.domid, pfn=pfn, readonly=True)
    return host, a, b, gt, a.p2m[pfn]


def entry_flags(host, gt, granter, ref) -> int:
    return struct.unpack("<H", host.mem.read(gt._entry_addr(granter.domid, ref), 2))[0]


# ------------------------------------------------------------------ map and unmap, two at a time
def test_map_and_unmap_arrays_through_the_hypercall(granted):
    host, a, b, gt, mfn = granted
    _, va = free_va(b)
    buf = GuestBuffer(host, b, b.mem_pages - 4)
    buf.write(0, map_op(va, GNTMAP_host_map, 8, a.domid)
              + map_op(0, GNTMAP_device_map | GNTMAP_readonly, 9, a.domid)
              + map_op(0, GNTMAP_device_map, 7_000_000, a.domid))
    assert gnttab_op(host, b, GNTTABOP_map_grant_ref, buf, 3) == 0
    # entry 0: a host mapping; the PTE at host_addr now points at A's frame, no bus address
    assert buf.s16(18) == GNTST_okay
    h0 = buf.u32(20)
    assert buf.u64(24) == 0
    assert (pte_of(host, b, va) >> 12) & 0xFFFFFFFFFF == mfn and pte_of(host, b, va) & 2
    # entry 1 (32 bytes on): a device mapping of the read-only grant; the machine address
    assert buf.s16(MAP_SIZE + 18) == GNTST_okay
    h1 = buf.u32(MAP_SIZE + 20)
    assert buf.u64(MAP_SIZE + 24) == mfn << 12
    assert h0 != h1
    # entry 2: a ref beyond A's table
    assert buf.s16(2 * MAP_SIZE + 18) == GNTST_bad_gntref
    assert entry_flags(host, gt, a, 8) & (GTF_reading | GTF_writing) == GTF_reading | GTF_writing
    assert entry_flags(host, gt, a, 9) & (GTF_reading | GTF_writing) == GTF_reading
    assert host.mm.pv.check_invariants() == []

    buf.write(0, unmap_op(va, h0) + unmap_op(0, h1) + unmap_op(0, h1))
    assert gnttab_op(host, b, GNTTABOP_unmap_grant_ref, buf, 3) == 0
    assert buf.s16(20) == GNTST_okay
    assert buf.s16(UNMAP_SIZE + 20) == GNTST_okay
    assert buf.s16(2 * UNMAP_SIZE + 20) == GNTST_bad_handle, "the second unmap of one handle"
    assert not pte_of(host, b, va) & 1
    assert not entry_flags(host, gt, a, 8) & (GTF_reading | GTF_writing)
    assert not entry_flags(host, gt, a, 9) & (GTF_reading | GTF_writing)
    assert host.mm.pv.check_invariants() == []


def test_refused_map_leaves_nothing_behind(granted):
    host, a, b, gt, _mfn = granted
    _, va = free_va(b)
    pte = pte_of(host, b, va)
    buf = GuestBuffer(host, b, b.mem_pages - 4)
    # write access to the read-only grant; and a map with neither host_map nor device_map
    buf.write(0, map_op(va, GNTMAP_host_map, 9, a.domid) + map_op(va, 0, 8, a.domid))
    assert gnttab_op(host, b, GNTTABOP_map_grant_ref, buf, 2) == 0
    assert buf.s16(18) < 0 and buf.s16(MAP_SIZE + 18) < 0
    assert pte_of(host, b, va) == pte
    assert not entry_flags(host, gt, a, 9) & (GTF_reading | GTF_writing)
    assert not entry_flags(host, gt, a, 8) & (GTF_reading | GTF_writing)
    assert gt.maptrack.get(b.domid, {}) == {}


# ------------------------------------------------------------------ copy
def test_copy_array_through_the_hypercall(granted):
    host, a, b, _gt, mfn = granted
    host.mem.write(mfn << 12, b"from A's granted page")
    pfn_b, _ = free_va(b)
    dst = b.p2m[pfn_b]
    host.mem.write(dst << 12, bytes(4096))
    host.mem.write((dst << 12) + 2048, b"from B's own page")
    buf = GuestBuffer(host, b, b.mem_pages - 4)
    buf.write(0, copy_op((8, a.domid, 0), (dst, DOMID_SELF, 100), 21, GNTCOPY_source_gref)
              + copy_op((dst, DOMID_SELF, 2048), (8, a.domid, 64), 17, GNTCOPY_dest_gref)
              + copy_op((dst, DOMID_SELF, 0), (9, a.domid, 0), 8, GNTCOPY_dest_gref)
              + copy_op((8, a.domid, 4000), (dst, DOMID_SELF, 0), 200, GNTCOPY_source_gref))
    assert gnttab_op(host, b, GNTTABOP_copy, buf, 4) == 0
    assert buf.s16(36) == GNTST_okay
    assert host.mem.read((dst << 12) + 100, 21) == b"from A's granted page"
    assert buf.s16(COPY_SIZE + 36) == GNTST_okay
    assert host.mem.read((mfn << 12) + 64, 17) == b"from B's own page"
    assert buf.s16(2 * COPY_SIZE + 36) < 0, "writing through a read-only grant"
    assert host.mem.read(mfn << 12, 8) == b"from A's"
    assert buf.s16(3 * COPY_SIZE + 36) == GNTST_bad_copy_arg
    assert host.mem.read(dst << 12, 8) == bytes(8)


# ------------------------------------------------------------------ the table itself
def test_setup_table_and_query_size_through_the_hypercall(two_guests):
    host, a, b = two_guests
    buf = GuestBuffer(host, b, b.mem_pages - 4)
    frame_list = buf.va + 2048
    buf.write(2048, b"\xEE" * 8 * 5)
    buf.write(0, struct.pack("<HxxIh6xQ", DOMID_SELF, 4, 0x5A5A, frame_list))
    assert gnttab_op(host, b, GNTTABOP_setup_table, buf, 1) == 0
    assert buf.s16(8) == GNTST_okay
    frames = [buf.u64(2048 + 8 * i) for i in range(4)]
    assert frames == host.grant_tables.frames[b.domid][:4]
    assert all(host.mm.pv.pages[f].owner == b.domid for f in frames), "a PV guest gets its own mfns"
    assert buf.u64(2048 + 32) == 0xEEEEEEEEEEEEEEEE, "no fifth frame written"

    buf.write(0, struct.pack("<HxxIIh2x", DOMID_SELF, 0x5A5A5A5A, 0x5A5A5A5A, 0x5A5A))
    assert gnttab_op(host, b, GNTTABOP_query_size, buf, 1) == 0
    assert (buf.u32(4), buf.u32(8), buf.s16(12)) == (4, 64, GNTST_okay)


def test_an_unprivileged_guest_cannot_set_up_another_domains_table(two_guests):
    host, a, b = two_guests
    gt = host.grant_tables
    buf = GuestBuffer(host, b, b.mem_pages - 4)
    buf.write(2048, bytes(8))
    buf.write(0, struct.pack("<HxxIh6xQ", a.domid, 1, 0x5A5A, buf.va + 2048))
    assert gnttab_op(host, b, GNTTABOP_setup_table, buf, 1) == 0
    assert buf.s16(8) < 0
    assert a.domid not in gt.frames, "no table made for A"
    assert buf.u64(2048) == 0, "no frame handed out"
    # naming itself by its number is the same as DOMID_SELF
    buf.write(0, struct.pack("<HxxIh6xQ", b.domid, 1, 0x5A5A, buf.va + 2048))
    assert gnttab_op(host, b, GNTTABOP_setup_table, buf, 1) == 0
    assert buf.s16(8) == GNTST_okay and buf.u64(2048) == gt.frames[b.domid][0]


def test_an_unknown_sub_op_is_enosys(two_guests):
    host, _a, b = two_guests
    buf = GuestBuffer(host, b, b.mem_pages - 4)
    assert gnttab_op(host, b, 99, buf, 1) == -38              # ENOSYS (public/errno.h)


def test_a_domains_own_max_grant_frames_bounds_setup_table_and_query_size(two_guests):
    # gt->max_grant_frames comes from the createdomain domctl (xl.cfg's max_grant_frames);
    # gnttab_setup_table() refuses more with GNTST_general_error, query_size reports it
    host, a, b = two_guests
    b.max_grant_frames = 2
    buf = GuestBuffer(host, b, b.mem_pages - 4)
    buf.write(0, struct.pack("<HxxIh6xQ", DOMID_SELF, 3, 0x5A5A, buf.va + 2048))
    assert gnttab_op(host, b, GNTTABOP_setup_table, buf, 1) == 0
    assert buf.s16(8) == -1, "GNTST_general_error beyond the domain's max_grant_frames"
    buf.write(0, struct.pack("<HxxIh6xQ", DOMID_SELF, 2, 0x5A5A, buf.va + 2048))
    assert gnttab_op(host, b, GNTTABOP_setup_table, buf, 1) == 0
    assert buf.s16(8) == GNTST_okay
    buf.write(0, struct.pack("<HxxIIh2x", DOMID_SELF, 0x5A5A5A5A, 0x5A5A5A5A, 0x5A5A))
    assert gnttab_op(host, b, GNTTABOP_query_size, buf, 1) == 0
    assert (buf.u32(4), buf.u32(8), buf.s16(12)) == (2, 2, GNTST_okay)
    assert a.max_grant_frames == 64, "a domain without the key has Xen's default"
