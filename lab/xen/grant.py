"""Grant tables, version 1: how one domain lets another reach a page of its memory.

The granting guest writes entries into its grant table (frames Xen gives it
with ``GNTTABOP_setup_table``; an HVM or PVH guest puts them into its own
physical address space with ``XENMEM_add_to_physmap``, XENMAPSPACE_grant_table,
and setup_table tells it only their gfns): ``u16 flags; u16 domid; u32
frame``, 512 to a page, entries 0-7 reserved. Another domain may then map (``map_grant_ref``)
or copy (``copy``) that frame, and only while the entry says so
(``xen/common/grant_table.c``):

* the entry must permit access (type GTF_permit_access) to *that* domain, and
  a read-only grant (GTF_readonly) can only be mapped read-only; otherwise the
  status is ``GNTST_general_error`` (``_set_status_v1``);
* a map with neither GNTMAP_host_map nor GNTMAP_device_map is
  ``GNTST_bad_gntref`` ("Bad flags in grant map op");
* a mapping *holds* the frame for as long as it lives: a general reference,
  and a writable type reference when it may write (``get_page`` /
  ``get_page_type(PGT_writable_page)``), so the granter can neither free the
  frame under it nor turn it into a page table; a frame that cannot be taken
  writable is ``GNTST_general_error`` ("Could not pin grant frame");
* the entry stays *active* (pinned) while mapped: Xen sets GTF_reading /
  GTF_writing in it, and clearing the entry does not revoke a live mapping;
* a host mapping is the only way a domain's page tables may point at another
  domain's frame, and only in the L1 slot the mapping wrote
  (:meth:`GrantTables.grant_ok`, asked by ``lab/xen/mm.py``);
* a copy takes the same references for the time of the copy
  (``gnttab_copy_claim_buf``): a destination that cannot be writable (one of
  the caller's page tables) is ``GNTST_general_error``, and only
  ``DOMID_SELF`` may name a frame directly (``GNTST_permission_denied``).

Status codes are Xen's GNTST values. The lab's backends run in dom0 as Python
services; they map grants through :meth:`GrantTables.map_for_service` and
read and write the granted page only through the mapping's held frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from . import abi
from ..hw.x86 import (_PAGE_NX, _PAGE_PRESENT, _PAGE_RW, _PAGE_USER, is_canonical)
from .abi.grant_table import (GNTCOPY_dest_gref, GNTCOPY_source_gref, GNTMAP_device_map,
                              GNTMAP_host_map, GNTMAP_readonly, GNTST_bad_copy_arg,
                              GNTST_bad_domain, GNTST_bad_gntref, GNTST_bad_handle, GNTST_bad_page,
                              GNTST_general_error, GNTST_okay, GNTST_permission_denied,
                              GTF_permit_access, GTF_reading, GTF_readonly, GTF_sub_page,
                              GTF_writing)
from .frames import HeldFrame
from .guestmem import copy_from_guest, copy_to_guest
from .hypercall_table import Preempted, SubOps, X86_HYPERCALLS, preempt_check

ENTRY_SIZE = 8
ENTRIES_PER_FRAME = 4096 // ENTRY_SIZE
MAX_FRAMES = abi.DEFAULT_MAX_GRANT_FRAMES



@dataclass(eq=False)
class Mapping:
    mapper: int
    granter: int
    ref: int
    mfn: int
    writable: bool
    host_addr: int          # 0 for a device mapping (no page-table entry)
    held: HeldFrame         # the references the mapping holds until it is unmapped
    pte_maddr: int | None = None   # the L1 slot a host mapping wrote


@dataclass
class Active:
    """active_grant_entry: one granted entry while somebody has it mapped."""
    domid: int
    mfn: int
    mappings: list[Mapping] = field(default_factory=list)


class GrantTables:
    def __init__(self, host) -> None:
        self.host = host
        self.frames: dict[int, list[int]] = {}        # granter -> grant table frames (mfns)
        self.maptrack: dict[int, dict[int, Mapping]] = {}
        self.next_handle: dict[int, int] = {}
        self.active: dict[tuple[int, int], Active] = {}

    # -- the granter's table ------------------------------------------------
    def max_frames(self, domid: int) -> int:
        """gt->max_grant_frames: the domain's own limit (xl.cfg's max_grant_frames), else Xen's."""
        dom = self.host.domains.get(domid)
        return dom.max_grant_frames if dom is not None else MAX_FRAMES

    def setup_table(self, domid: int, nr: int) -> tuple[int, list[int]]:
        if not 1 <= nr <= self.max_frames(domid):
            return GNTST_general_error, []
        frames = self.frames.setdefault(domid, [])
        if nr - len(frames) > len(self.host.free_frames):
            # gnttab_grow_table() failing to allocate: "Expand grant table ... failed", the table
            # stays as it was (a config may allow far more frames than the host has)
            return GNTST_general_error, []
        while len(frames) < nr:
            frames.append(self.host.alloc_frame(domid))
        return GNTST_okay, frames[:nr]

    def frame_for_physmap(self, domid: int, idx: int) -> int | None:
        """gnttab_get_shared_frame_mfn(): frame ``idx``, growing the table up to its maximum."""
        frames = self.frames.setdefault(domid, [])
        if idx >= len(frames):
            if idx + 1 > self.max_frames(domid) or self.setup_table(domid, idx + 1)[0] != GNTST_okay:
                return None
        return frames[idx]

    def _entry_addr(self, granter: int, ref: int) -> int | None:
        frames = self.frames.get(granter, [])
        idx, slot = divmod(ref, ENTRIES_PER_FRAME)
        if ref < 0 or idx >= len(frames):
            return None
        return (frames[idx] << 12) + slot * ENTRY_SIZE

    def nr_frames(self, domid: int) -> int:
        """nr_grant_frames(): a live domain has had INITIAL_NR_GRANT_FRAMES since its creation
        (grant_table_init(), common/grant_table.c), whether or not it ever asked for them.

        The lab materialises those first frames when the domain first reaches them
        (setup_table, XENMEM_add_to_physmap): until then every entry is zero, which is
        exactly what a fresh table holds.
        """
        n = len(self.frames.get(domid, []))
        dom = self.host.domains.get(domid)
        if dom is not None and dom.alive:
            return max(n, abi.INITIAL_NR_GRANT_FRAMES)
        return n

    def read_entry(self, granter: int, ref: int) -> tuple[int, int, int] | None:
        """The entry (flags, domid, frame), or None for a ref beyond the table (GNTST_bad_gntref)."""
        addr = self._entry_addr(granter, ref)
        if addr is None:
            if 0 <= ref < self.nr_frames(granter) * ENTRIES_PER_FRAME:
                return 0, 0, 0                     # a frame of the table nobody has written yet
            return None
        return struct.unpack("<HHI", self.host.mem.read(addr, 8))

    def _set_flags(self, granter: int, ref: int, set_bits: int, clear_bits: int) -> None:
        # The table frames are Xen's pages shared with the granter (is_special_page):
        # written only while the granter's table exists.
        addr = self._entry_addr(granter, ref)
        if addr is None:
            return
        flags = int.from_bytes(self.host.mem.read(addr, 2), "little")
        self.host.mem.write(addr, ((flags | set_bits) & ~clear_bits).to_bytes(2, "little"))

    def _granted_mfn(self, granter_dom, frame: int) -> int | None:
        """get_paged_frame(): the granter's own RAM frame, or None (GNTST_bad_page)."""
        mfn = granter_dom.gfn_to_mfn(frame) if not granter_dom.is_pv else frame
        pv = self.host.mm.pv
        if mfn is None or not pv.valid(mfn) or pv.pages.get(mfn) is None \
                or pv.pages[mfn].owner != granter_dom.domid:
            return None
        return mfn

    # -- the checks of map and copy -------------------------------------------
    def _acquire(self, user: int, granter: int, ref: int, write: bool, holder: str,
                 mapflag: bool) -> tuple[int, HeldFrame | None, Active | None]:
        """Check the entry and take the frame's references: (status, held frame, active entry)."""
        gdom = self.host.domains.get(granter)
        if gdom is None or not gdom.alive:
            return GNTST_bad_domain, None, None
        entry = self.read_entry(granter, ref)
        if entry is None:
            self._debug(f"Bad ref {ref:#x} for d{granter}")
            return GNTST_bad_gntref, None, None
        act = self.active.get((granter, ref))
        if act is not None and act.domid != user:
            return GNTST_general_error, None, None       # pinned by another domain
        flags, domid, frame = entry
        mask = abi.GTF_type_mask | (GTF_sub_page if mapflag else 0)
        if act is None and (flags & mask != GTF_permit_access or domid != user):
            self._debug(f"Bad flags ({flags:x}) or dom ({domid}); expected d{user}")
            return GNTST_general_error, None, None
        if write and flags & GTF_readonly:
            self._debug("Attempt to write-pin a r/o grant entry")
            return GNTST_general_error, None, None
        mfn = act.mfn if act is not None else self._granted_mfn(gdom, frame)
        if mfn is None:
            return GNTST_bad_page, None, None
        held = self.host.frames.hold(granter, mfn, writable=write, holder=holder)
        if isinstance(held, int):
            if gdom.alive:
                self._debug(f"Could not pin grant frame {mfn:#x}")
            return GNTST_general_error, None, None
        if act is None:
            act = Active(user, mfn)
        return GNTST_okay, held, act

    def _debug(self, text: str) -> None:
        # gdprintk(): debug builds print these, with the source file and line.
        self.host.log(f"common/grant_table.c: {text}")

    # -- mapping ------------------------------------------------------------
    def map(self, v, host_addr: int, flags: int, ref: int, granter: int) -> tuple[int, int, int]:
        user = v.domain.domid
        readonly = bool(flags & GNTMAP_readonly)
        if not flags & (GNTMAP_host_map | GNTMAP_device_map):
            self._debug(f"Bad flags in grant map op: {flags:x}")
            self._event(v, "map_grant_ref", ref, granter, None, flags, GNTST_bad_gntref)
            return GNTST_bad_gntref, 0, 0
        if not v.domain.is_pv:
            # "No device mapping in HVM domain"; HVM and PVH host maps go into the p2m,
            # which the lab's backends (all in dom0, a PV domain) never need.
            self._event(v, "map_grant_ref", ref, granter, None, flags, GNTST_general_error)
            return GNTST_general_error, 0, 0
        pte_maddr = None
        if flags & GNTMAP_host_map:
            table = v.guest_table if v.guest_table else v.cpu.cr3 >> 12 if v.cpu is not None else 0
            pte_maddr = self.host.mm.pv.l1e_maddr_for_va(table, host_addr) \
                if table and not abi.in_xen_reserved_va(host_addr) and is_canonical(host_addr) else None
            if pte_maddr is None:
                # create_grant_pv_mapping(): "Could not find L1 PTE for linear address"
                self._debug(f"Could not find L1 PTE for linear address {host_addr:x}")
                self._event(v, "map_grant_ref", ref, granter, None, flags, GNTST_general_error)
                return GNTST_general_error, 0, 0
        status, held, act = self._acquire(user, granter, ref, not readonly, f"d{user} grant map", True)
        if status != GNTST_okay:
            self._event(v, "map_grant_ref", ref, granter, None, flags, status)
            return status, 0, 0
        mfn = act.mfn
        handle = self.next_handle.get(user, 0)
        m = Mapping(user, granter, ref, mfn, not readonly, host_addr if flags & GNTMAP_host_map else 0, held,
                    pte_maddr)
        if m.host_addr:
            val = (mfn << 12) | _PAGE_PRESENT | _PAGE_USER | _PAGE_NX | (0 if readonly else _PAGE_RW)
            act.mappings.append(m)                 # so grant_ok admits this one slot
            self.active[(granter, ref)] = act
            rc = self.host.mm.update_va_mapping(v, host_addr, val, abi.UVMF_INVLPG)
            if rc != 0:
                act.mappings.remove(m)
                if not act.mappings:
                    del self.active[(granter, ref)]
                held.release()
                self._event(v, "map_grant_ref", ref, granter, mfn, flags, GNTST_general_error)
                return GNTST_general_error, 0, 0
        else:
            act.mappings.append(m)
            self.active[(granter, ref)] = act
        self.next_handle[user] = handle + 1
        self.maptrack.setdefault(user, {})[handle] = m
        self._set_flags(granter, ref, GTF_reading | (0 if readonly else GTF_writing), 0)
        self._event(v, "map_grant_ref", ref, granter, mfn, flags, GNTST_okay)
        return GNTST_okay, handle, (mfn << 12) if flags & GNTMAP_device_map else 0

    def unmap(self, v, host_addr: int, handle: int) -> int:
        user = v.domain.domid
        m = self.maptrack.get(user, {}).get(handle)
        if m is None:
            self._event(v, "unmap_grant_ref", None, None, None, None, GNTST_bad_handle)
            return GNTST_bad_handle
        if m.host_addr:
            # replace_grant_pv_mapping(): the entry at host_addr must still map the frame.
            table = v.guest_table if v.guest_table else v.cpu.cr3 >> 12 if v.cpu is not None else 0
            l1e = self.host.mm.pv.l1e_maddr_for_va(table, host_addr) \
                if table and not abi.in_xen_reserved_va(host_addr) and is_canonical(host_addr) else None
            pte = self.host.mem.read_u64(l1e) if l1e is not None else 0
            if l1e is None or l1e != m.pte_maddr or not pte & _PAGE_PRESENT or (pte >> 12) & 0xFF_FFFF_FFFF != m.mfn:
                self._debug(f"PTE entry {pte:x} for address {host_addr:x} doesn't match frame {m.mfn:x}")
                self._event(v, "unmap_grant_ref", m.ref, m.granter, m.mfn, None, GNTST_general_error)
                return GNTST_general_error
            m.pte_maddr = None                     # no longer admitted: the entry goes now
            self.host.mm.update_va_mapping(v, host_addr, 0, abi.UVMF_INVLPG)
        self._drop(m, handle)
        self._event(v, "unmap_grant_ref", m.ref, m.granter, m.mfn, None, GNTST_okay)
        return GNTST_okay

    def _drop(self, m: Mapping, handle: int) -> None:
        del self.maptrack[m.mapper][handle]
        m.held.release()
        act = self.active.get((m.granter, m.ref))
        if act is not None and m in act.mappings:
            act.mappings.remove(m)
            if not act.mappings:
                del self.active[(m.granter, m.ref)]
        others = act.mappings if act is not None else []
        clear = 0
        if not any(x.writable for x in others):
            clear |= GTF_writing
        if not others:
            clear |= GTF_reading
        self._set_flags(m.granter, m.ref, 0, clear)

    def map_for_service(self, service_vcpu, granter: int, ref: int, readonly: bool) -> tuple[int, int, int]:
        """A dom0 service maps a grant (device_map: it gets the machine address, no PTE)."""
        flags = GNTMAP_device_map | (GNTMAP_readonly if readonly else 0)
        return self.map(service_vcpu, 0, flags, ref, granter)

    def unmap_for_service(self, service_vcpu, handle: int) -> int:
        """A dom0 service's unmap: its device mapping has no host address."""
        return self.unmap(service_vcpu, 0, handle)

    def frame_of(self, mapper: int, handle: int) -> HeldFrame | None:
        """The held frame of a live mapping: how a service reads and writes what it mapped."""
        m = self.maptrack.get(mapper, {}).get(handle)
        return m.held if m is not None else None

    def grant_ok(self, domid: int, mfn: int, writable: bool, slot: int | None) -> bool:
        """May ``domid``'s L1 slot ``slot`` map ``mfn``? Only where a live host mapping wrote it."""
        if slot is None:
            return False
        for m in self.maptrack.get(domid, {}).values():
            if m.pte_maddr == slot and m.mfn == mfn and (m.writable or not writable):
                return True
        for act in self.active.values():           # a mapping being installed right now
            for m in act.mappings:
                if m.mapper == domid and m.pte_maddr == slot and m.mfn == mfn and (m.writable or not writable):
                    return True
        return False

    def domain_gone(self, dom) -> None:
        """gnttab_release_mappings(): a destroyed mapper's mappings go (its page tables went
        first); a destroyed granter's table goes, its mapped frames stay held by their mappers."""
        for handle, m in sorted(self.maptrack.get(dom.domid, {}).items()):
            m.pte_maddr = None
            self._drop(m, handle)
        self.maptrack.pop(dom.domid, None)
        self.next_handle.pop(dom.domid, None)
        self.frames.pop(dom.domid, None)

    # -- copy -----------------------------------------------------------------
    def copy_one(self, v, src: tuple[int, int, int], dst: tuple[int, int, int], length: int,
                 flags: int) -> int:
        """src/dst: (ref-or-frame, domid, offset). GNTCOPY_source_gref/dest_gref say which is a ref."""
        user = v.domain
        bufs: list[HeldFrame] = []
        try:
            for (val, domid, _off), is_ref, write in ((src, flags & GNTCOPY_source_gref, False),
                                                       (dst, flags & GNTCOPY_dest_gref, True)):
                # gnttab_copy_lock_domain(): only DOMID_SELF may name a frame.
                if not is_ref and domid != abi.DOMID_SELF:
                    return GNTST_permission_denied
                target = user.domid if domid == abi.DOMID_SELF else domid
                if target not in self.host.domains:
                    return GNTST_bad_domain
                if is_ref:
                    status, held, _act = self._acquire(user.domid, target, val, write,
                                                       f"d{user.domid} grant copy", False)
                    if status != GNTST_okay:
                        return status
                else:
                    mfn = self._granted_mfn(user, val)
                    if mfn is None:
                        self._debug(f"source frame {val:x} invalid")
                        return GNTST_bad_page
                    held = self.host.frames.hold(user.domid, mfn, writable=write,
                                                 holder=f"d{user.domid} grant copy")
                    if isinstance(held, int):
                        self._debug(f"Could not get writable frame {mfn:#x}")
                        return GNTST_general_error
                bufs.append(held)
            if src[2] + length > 4096 or dst[2] + length > 4096:
                self._debug("copy beyond page area")
                return GNTST_bad_copy_arg
            bufs[1].write(dst[2], bufs[0].read(src[2], length))
            return GNTST_okay
        finally:
            for held in bufs:
                held.release()

    def _event(self, v, op, ref, granter, frame, flags, status) -> None:
        self.host.emit(v, "grant", op=op, ref=ref, granter=granter, frame=frame, flags=flags,
                       status=abi.GNTST_NAMES.get(status, status))


GNTTAB_OPS = SubOps("grant_table_op", abi.GNTTABOP_LAYOUTS)


@X86_HYPERCALLS.handler("grant_table_op", nargs=3)
def grant_table_op(host, v, args, info) -> int | Preempted:
    cmd, count = args[0], args[2] & 0xFFFFFFFF
    name = abi.GNTTABOP_NAMES.get(cmd, str(cmd))
    info["args"] = [name, f"{count} op(s)"]
    if v.domain.is_hvm and cmd not in abi.HVM_ALLOWED_GNTTABOP:
        return -abi.ERRNO["ENOSYS"]
    if count >> 31:
        return -abi.ERRNO["EINVAL"]            # do_grant_table_op(): (int)count < 0
    gt = host.grant_tables
    op = GNTTAB_OPS.get(cmd)
    if op is None:
        return -abi.ERRNO["ENOSYS"]
    return op(host, v, gt, args, count, GNTTAB_OPS.layout(cmd))


@GNTTAB_OPS.op(abi.GNTTABOP_setup_table)
def setup_table(host, v, gt: GrantTables, args, count: int, lay) -> int:
    va, dom = args[1], v.domain
    if count != 1:
        return -abi.ERRNO["EINVAL"]
    d, nr = struct.unpack("<HxxI", copy_from_guest(host, v, va, 8))
    frame_list = int.from_bytes(copy_from_guest(host, v, va + lay.at("frame_list"), 8), "little")
    if d not in (abi.DOMID_SELF, dom.domid) and not dom.privileged:
        copy_to_guest(host, v, va + lay.at("status"), struct.pack("<h", GNTST_permission_denied))
        return 0
    target = dom.domid if d == abi.DOMID_SELF else d
    tdom = host.domains.get(target)
    if tdom is None:
        copy_to_guest(host, v, va + lay.at("status"), struct.pack("<h", GNTST_bad_domain))
        return 0
    status, frames = gt.setup_table(target, nr)
    copy_to_guest(host, v, va + lay.at("status"), struct.pack("<h", status))
    for i, mfn in enumerate(frames):
        # gnttab_shared_gfn(): a PV domain gets the mfn; a translated one the gfn where
        # the frame sits in its physmap (after XENMEM_add_to_physmap), else INVALID_GFN.
        gfn = mfn if tdom.is_pv else host.mm.pv.m2p.get(mfn, abi.INVALID_M2P_ENTRY)
        copy_to_guest(host, v, frame_list + 8 * i, gfn.to_bytes(8, "little"))
    return 0


@GNTTAB_OPS.op(abi.GNTTABOP_query_size)
def query_size(host, v, gt: GrantTables, args, count: int, lay) -> int:
    va, dom = args[1], v.domain
    if count != 1:
        return -abi.ERRNO["EINVAL"]
    d = int.from_bytes(copy_from_guest(host, v, va, 2), "little")
    target = dom.domid if d == abi.DOMID_SELF else d
    if target not in host.domains:
        status, nr = GNTST_bad_domain, 0
    elif target != dom.domid and not dom.privileged:
        status, nr = GNTST_permission_denied, 0      # xsm_grant_query_size(XSM_TARGET)
    else:
        status, nr = GNTST_okay, gt.nr_frames(target)
    copy_to_guest(host, v, va + lay.at("nr_frames"),
                  struct.pack("<IIh", nr, gt.max_frames(target) if status == GNTST_okay else 0, status))
    return 0


def _batched(one):
    """A sub-op over an array of ``count`` structures (map, unmap, copy)."""
    def run(host, v, gt: GrantTables, args, count: int, lay) -> int | Preempted:
        cmd, va, size = args[0], args[1], lay.size
        # One entry at a time, each copied in, done and its status copied out before the
        # next is read; preempted with a continuation as do_grant_table_op() is.
        for i in range(count):
            if i and preempt_check(host, v):
                return Preempted([cmd, va + size * i, count - i] + list(args[3:]))
            host.charge(v, "hypercall_batch_entry")
            one(host, v, gt, va + size * i)
        return 0
    return run


def _map_one(host, v, gt: GrantTables, base: int) -> None:
    host_addr, flags, ref, granter = struct.unpack("<QIIH", copy_from_guest(host, v, base, 18))
    status, handle, bus = gt.map(v, host_addr, flags, ref, granter)
    copy_to_guest(host, v, base + 18, struct.pack("<hIQ", status, handle, bus)[:14])


def _unmap_one(host, v, gt: GrantTables, base: int) -> None:
    host_addr, _bus, handle = struct.unpack("<QQI", copy_from_guest(host, v, base, 20))
    status = gt.unmap(v, host_addr, handle)
    copy_to_guest(host, v, base + 20, struct.pack("<h", status))


def _copy_one(host, v, gt: GrantTables, base: int) -> None:
    raw = copy_from_guest(host, v, base, 36)
    s_val, s_dom, s_off, d_val, d_dom, d_off, length, flags = struct.unpack("<QHH4xQHH4xHH", raw)
    status = gt.copy_one(v, (s_val, s_dom, s_off), (d_val, d_dom, d_off), length, flags)
    copy_to_guest(host, v, base + 36, struct.pack("<h", status))


GNTTAB_OPS.op(abi.GNTTABOP_map_grant_ref)(_batched(_map_one))
GNTTAB_OPS.op(abi.GNTTABOP_unmap_grant_ref)(_batched(_unmap_one))
GNTTAB_OPS.op(abi.GNTTABOP_copy)(_batched(_copy_one))
