"""Grant map, unmap and copy on Arm: the common checks, stage 2 instead of page tables.

The granter's entries and the checks on them are Xen's common code
(``xen/common/grant_table.c``), the same as on x86: an entry must permit
access (GTF_permit_access) to the mapping domain, a read-only entry can only be
mapped read-only, a ref past the table is ``GNTST_bad_gntref``, an entry pinned
by another domain or a wrong domid ``GNTST_general_error``, a granted frame
that is not the granter's own RAM ``GNTST_bad_page``, and GTF_reading /
GTF_writing are set while it is mapped.

What differs is where a mapping goes. An Arm guest is translated: there are
no page tables for Xen to write, so ``host_addr`` is a guest physical address
(an IPA) and the mapping is a stage-2 entry of the mapping domain
(``create_grant_host_mapping()`` in ``xen/arch/arm/mm.c``: type
p2m_grant_map_rw or p2m_grant_map_ro, never executable). The flags must be
exactly GNTMAP_host_map (and GNTMAP_readonly); a device map is "No device
mapping in HVM domain" (``paging_mode_external``), both ``GNTST_general_error``.
Unmapping (``replace_grant_host_mapping()``) removes the stage-2 entry only if
it still maps the granted frame.

A mapped or in-copy frame is *held*: while held it is never handed back to
Xen's heap, whatever its owner does (gives the frame away with
XENMEM_add_to_physmap, or is destroyed); the last release frees it. This is
the lab's form of the ``get_page()`` reference Xen takes (``frames.py`` is its
x86 form).

Stage-2 tables for grant mappings come out of the domain's P2M pool, as
every p2m table does on Arm; the pool is the size libxl gives it
(``libxl__get_required_paging_memory()``), and a map that would need more
is ``GNTST_general_error`` (p2m_set_entry() answering -ENOMEM).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from ...hw.memory import PAGE_SHIFT, PAGE_SIZE
from .. import abi
from ..abi.grant_table import (GNTCOPY_dest_gref, GNTCOPY_source_gref, GNTMAP_device_map,
                               GNTMAP_host_map, GNTMAP_readonly, GNTST_bad_copy_arg, GNTST_bad_domain,
                               GNTST_bad_gntref, GNTST_bad_handle, GNTST_bad_page, GNTST_general_error,
                               GNTST_okay, GNTST_permission_denied, GTF_permit_access, GTF_reading,
                               GTF_readonly, GTF_sub_page, GTF_writing)
from ..abi.grant_table import GNTTABOP_LAYOUTS
from ..frames import FrameReleased
from ..grant import ENTRIES_PER_FRAME, ENTRY_SIZE
from .frames import DOM0_GRANT_WINDOW, DOM0_GRANT_WINDOW_PAGES

E = abi.ERRNO
#: The IPA size of the lab's stage 2 (VTCR_EL2.T0SZ 16): a gfn at or past 2**36 has no entry.
IPA_GFN_LIMIT = 1 << 36
#: Batch entries done before a continuation (the lab's hypercall_preempt_check()).
PREEMPT_EVERY = 64


@dataclass(eq=False)
class ArmMapping:
    mapper: int
    granter: int
    ref: int
    mfn: int
    writable: bool
    gfn: int                  # where it sits in the mapper's stage 2


@dataclass
class ArmActive:
    """active_grant_entry: a granted entry while somebody has it mapped."""
    domid: int
    mfn: int
    mappings: list[ArmMapping] = field(default_factory=list)


class ArmContinuation:
    """A batch stopped part-way: the guest re-enters ``hvc`` with these x0-x2
    (hypercall_create_continuation() on Arm rewinds the PC onto the hvc)."""

    __slots__ = ("args",)

    def __init__(self, args: list[int]) -> None:
        self.args = args


def p2m_pool_pages(mem_pages: int, vcpus: int) -> int:
    """libxl__get_required_paging_memory() for Arm: 4 KiB x (256 per vCPU + 2 per MiB of RAM)."""
    return 256 * max(1, vcpus) + 2 * (mem_pages * PAGE_SIZE >> 20)


class ArmGrantTables:
    def __init__(self, host) -> None:
        self.host = host
        self.maptrack: dict[int, dict[int, ArmMapping]] = {}
        self.next_handle: dict[int, int] = {}
        self.active: dict[tuple[int, int], ArmActive] = {}
        self.refs: dict[int, int] = {}              # mfn -> holds by grant mappings and copies
        self.service_holds: dict[int, int] = {}     # mfn -> holds by dom0's services (frames.py)
        self.orphans: set[int] = set()               # held frames whose owner let go of them

    # -- frames held ----------------------------------------------------------------------
    def _get(self, mfn: int, holds: dict[int, int] | None = None) -> None:
        holds = self.refs if holds is None else holds
        holds[mfn] = holds.get(mfn, 0) + 1

    def _put(self, mfn: int, holds: dict[int, int] | None = None) -> None:
        holds = self.refs if holds is None else holds
        n = holds.get(mfn, 0) - 1
        if n > 0:
            holds[mfn] = n
            return
        holds.pop(mfn, None)
        if mfn in self.orphans and mfn not in self.refs and mfn not in self.service_holds:
            self.orphans.discard(mfn)                # the last holder lets go: now it is freed
            self.host.mem.zero_frame(mfn)
            self.host.free_frames.append(mfn)

    def hold_frame(self, mfn: int) -> None:
        """A reference on ``mfn`` for a dom0 service's foreign or own mapping (``frames.py``)."""
        self._get(mfn, self.service_holds)

    def release_frame(self, mfn: int) -> None:
        self._put(mfn, self.service_holds)

    def free_or_keep(self, mfn: int) -> bool:
        """The owner gives ``mfn`` up: True when it may go back to the heap now, False when a
        mapping or copy still holds it (it is freed when the last one lets go)."""
        if mfn in self.refs or mfn in self.service_holds:
            self.orphans.add(mfn)
            return False
        return True

    def mapped_at(self, dom, gfn: int) -> bool:
        """Does ``dom``'s stage 2 hold a grant mapping at ``gfn``?"""
        return any(m.gfn == gfn for m in self.maptrack.get(dom.domid, {}).values())

    # -- the granter's table ----------------------------------------------------------------
    def _frames(self, granter) -> dict[int, int]:
        return granter.extra.get("gnttab_frames", {})

    def table_frames(self, domid: int) -> list[int | None]:
        """The domain's grant-table frames by index (None where it placed none), for the I/O view."""
        dom = self.host.domains.get(domid)
        frames = self._frames(dom) if dom is not None else {}
        return [frames.get(i) for i in range(max(frames) + 1)] if frames else []

    def nr_entries(self, granter) -> int:
        """A domain has one grant frame from creation, and as many as it placed (grow_table)."""
        frames = self._frames(granter)
        return (max(frames) + 1 if frames else 1) * ENTRIES_PER_FRAME

    def read_entry(self, granter, ref: int) -> tuple[int, int, int] | None:
        if not 0 <= ref < self.nr_entries(granter):
            return None
        idx, slot = divmod(ref, ENTRIES_PER_FRAME)
        mfn = self._frames(granter).get(idx)
        if mfn is None:
            return (0, 0, 0)                          # a frame Xen zeroed and the guest never saw
        return struct.unpack("<HHI", self.host.mem.read((mfn << PAGE_SHIFT) + slot * ENTRY_SIZE, ENTRY_SIZE))

    def _set_flags(self, granter, ref: int, set_bits: int, clear_bits: int) -> None:
        mfn = self._frames(granter).get(ref // ENTRIES_PER_FRAME)
        if mfn is None:
            return
        addr = (mfn << PAGE_SHIFT) + (ref % ENTRIES_PER_FRAME) * ENTRY_SIZE
        flags = int.from_bytes(self.host.mem.read(addr, 2), "little")
        self.host.mem.write(addr, ((flags | set_bits) & ~clear_bits).to_bytes(2, "little"))

    def own_frame(self, dom, gfn: int) -> int | None:
        """get_paged_frame(): the mfn of ``dom``'s own RAM at ``gfn``; None for nothing there,
        for a grant mapping (another domain's frame: get_page() fails) or a frame not its own."""
        p2m = self.host.p2m(dom)
        if p2m is None or not 0 <= gfn < IPA_GFN_LIMIT or self.mapped_at(dom, gfn):
            return None
        mfn = p2m.lookup(gfn)
        if mfn is None:
            return None
        owned = mfn in dom.extra.get("frames", ()) or mfn == dom.shared_info_mfn or \
            mfn in self._frames(dom).values()
        return mfn if owned else None

    def _acquire(self, user: int, granter_id: int, ref: int, write: bool,
                 mapflag: bool) -> tuple[int, ArmActive | None]:
        gdom = self.host.domains.get(granter_id)
        if gdom is None or not gdom.alive:
            return GNTST_bad_domain, None
        entry = self.read_entry(gdom, ref)
        if entry is None:
            self._debug(f"Bad ref {ref:#x} for d{granter_id}")
            return GNTST_bad_gntref, None
        act = self.active.get((granter_id, ref))
        if act is not None and act.domid != user:
            self._debug(f"Bad domain ({act.domid} != {user})")
            return GNTST_general_error, None
        flags, domid, frame = entry
        mask = abi.GTF_type_mask | (GTF_sub_page if mapflag else 0)
        if act is None and (flags & mask != GTF_permit_access or domid != user):
            self._debug(f"Bad flags ({flags:x}) or dom ({domid}); expected d{user}")
            return GNTST_general_error, None
        if write and flags & GTF_readonly:
            self._debug("Attempt to write-pin a r/o grant entry")
            return GNTST_general_error, None
        if act is None:
            mfn = self.own_frame(gdom, frame)
            if mfn is None:
                return GNTST_bad_page, None
            act = ArmActive(user, mfn)
        return GNTST_okay, act

    def _debug(self, text: str) -> None:
        self.host.log(f"common/grant_table.c: {text}")

    # -- map and unmap ------------------------------------------------------------------------
    def map(self, v, host_addr: int, flags: int, ref: int, granter: int) -> tuple[int, int, int]:
        dom = v.domain
        user = dom.domid
        readonly = bool(flags & GNTMAP_readonly)
        if not flags & (GNTMAP_host_map | GNTMAP_device_map):
            self._debug(f"Bad flags in grant map op: {flags:x}")
            return self._mapped(v, ref, granter, None, flags, GNTST_bad_gntref)
        if flags & (GNTMAP_device_map | abi.GNTMAP_application_map | abi.GNTMAP_contains_pte):
            self._debug("No device mapping in HVM domain")
            return self._mapped(v, ref, granter, None, flags, GNTST_general_error)
        status, act = self._acquire(user, granter, ref, not readonly, True)
        if status != GNTST_okay or act is None:
            return self._mapped(v, ref, granter, None, flags, status)
        # create_grant_host_mapping(): the frame goes into the mapper's stage 2 at host_addr.
        gfn = host_addr >> PAGE_SHIFT
        p2m = self.host.p2m(dom)
        why = None
        if p2m is None:
            why = "the mapping domain has no stage 2 (the lab's dom0 is its services)"
        elif host_addr & (PAGE_SIZE - 1) or gfn >= IPA_GFN_LIMIT:
            why = f"IPA {host_addr:#x} is not a page inside the IPA space"
        elif p2m.lookup(gfn) is not None:
            why = f"IPA {host_addr:#x} is in use (the lab maps grants only where nothing is)"
        elif len(p2m.tables.tables) + 3 > dom.extra.get("p2m_pool", p2m_pool_pages(dom.max_pages, len(dom.vcpus))):
            why = "P2M pool exhausted (-ENOMEM)"
        if why is not None:
            self._debug(f"create_grant_host_mapping: {why}")
            return self._mapped(v, ref, granter, act.mfn, flags, GNTST_general_error)
        assert p2m is not None
        try:
            p2m.map(gfn, act.mfn, "r" if readonly else "rw")        # p2m_grant_map_ro/rw: never executable
        except (MemoryError, IndexError):
            self._debug("create_grant_host_mapping: out of memory for stage-2 tables")
            return self._mapped(v, ref, granter, act.mfn, flags, GNTST_general_error)
        m = ArmMapping(user, granter, ref, act.mfn, not readonly, gfn)
        self._get(act.mfn)
        act.mappings.append(m)
        self.active[(granter, ref)] = act
        handle = self.next_handle.get(user, 0)
        self.next_handle[user] = handle + 1
        self.maptrack.setdefault(user, {})[handle] = m
        self._set_flags(self.host.domains[granter], ref, GTF_reading | (0 if readonly else GTF_writing), 0)
        self._mapped(v, ref, granter, act.mfn, flags, GNTST_okay)
        return GNTST_okay, handle, act.mfn << PAGE_SHIFT       # map_grant_ref() sets dev_bus_addr always

    def unmap(self, v, host_addr: int, handle: int) -> int:
        user = v.domain.domid
        m = self.maptrack.get(user, {}).get(handle)
        if m is None:
            self._debug(f"Bad handle {handle:#x}")
            self._event(v, "unmap_grant_ref", None, None, None, None, GNTST_bad_handle)
            return GNTST_bad_handle
        gfn = host_addr >> PAGE_SHIFT
        p2m = self.host.p2m(v.domain)
        # replace_grant_host_mapping(): guest_physmap_remove_page() only if gfn maps this frame.
        if gfn != m.gfn or p2m is None or p2m.lookup(gfn) != m.mfn:
            self._debug(f"replace_grant_host_mapping: IPA {host_addr:#x} does not map frame {m.mfn:#x}")
            self._event(v, "unmap_grant_ref", m.ref, m.granter, m.mfn, None, GNTST_general_error)
            return GNTST_general_error
        p2m.unmap(gfn)
        self._flush(v.domain)
        self._drop(m, handle)
        self._event(v, "unmap_grant_ref", m.ref, m.granter, m.mfn, None, GNTST_okay)
        return GNTST_okay

    # -- dom0's backends -------------------------------------------------------------------------
    def map_for_service(self, v, granter: int, ref: int, readonly: bool) -> tuple[int, int, int]:
        """A backend maps a grant as Linux's does on Arm: GNTMAP_host_map at a free page of its
        IPA space (gnttab_alloc_pages() takes one from the unpopulated pool), so the frame enters
        dom0's stage 2 there."""
        p2m = self.host.p2m(v.domain)
        gfn = self._free_window_gfn(p2m, v.domain.domid) if p2m is not None else None
        flags = GNTMAP_host_map | (GNTMAP_readonly if readonly else 0)
        if gfn is None:
            self._debug("no free page in dom0's grant window")
            return self._mapped(v, ref, granter, None, flags, GNTST_general_error)
        return self.map(v, gfn << PAGE_SHIFT, flags, ref, granter)

    def _free_window_gfn(self, p2m, mapper: int) -> int | None:
        used = {m.gfn for m in self.maptrack.get(mapper, {}).values()}
        for gfn in range(DOM0_GRANT_WINDOW, DOM0_GRANT_WINDOW + DOM0_GRANT_WINDOW_PAGES):
            if gfn not in used and p2m.lookup(gfn) is None:
                return gfn
        return None

    def frame_of(self, mapper: int, handle: int) -> "StageTwoPage | None":
        """The page a live mapping put in ``mapper``'s stage 2, read and written through it."""
        m = self.maptrack.get(mapper, {}).get(handle)
        return StageTwoPage(self.host, mapper, handle, m) if m is not None else None

    def unmap_for_service(self, v, handle: int) -> int:
        """GNTTABOP_unmap_grant_ref of a backend's mapping, at the IPA it was given."""
        m = self.maptrack.get(v.domain.domid, {}).get(handle)
        return self.unmap(v, (m.gfn << PAGE_SHIFT) if m is not None else 0, handle)

    def _drop(self, m: ArmMapping, handle: int) -> None:
        del self.maptrack[m.mapper][handle]
        act = self.active.get((m.granter, m.ref))
        if act is not None and m in act.mappings:
            act.mappings.remove(m)
            if not act.mappings:
                del self.active[(m.granter, m.ref)]
        others = act.mappings if act is not None else []
        clear = (0 if any(x.writable for x in others) else GTF_writing) | (0 if others else GTF_reading)
        gdom = self.host.domains.get(m.granter)
        if gdom is not None:
            self._set_flags(gdom, m.ref, 0, clear)
        self._put(m.mfn)

    def _flush(self, dom) -> None:
        """p2m_flush_tlb(): the domain's VMID-tagged entries go after a stage-2 entry does."""
        p2m = self.host.p2m(dom)
        for w in dom.vcpus:
            if w.cpu is not None and p2m is not None:
                w.cpu.tlb.invalidate(vmid=p2m.vmid)

    def domain_gone(self, dom) -> None:
        """gnttab_release_mappings(): the destroyed domain's own mappings go (its stage 2 with
        them); frames it granted that others still map stay held until they unmap."""
        for handle, m in sorted(self.maptrack.get(dom.domid, {}).items()):
            self._drop(m, handle)
        self.maptrack.pop(dom.domid, None)
        self.next_handle.pop(dom.domid, None)
        for key in [k for k in self.active if k[0] == dom.domid]:
            for m in self.active[key].mappings:
                m.granter = -1                      # no table to write flags back into
            del self.active[key]

    # -- copy ---------------------------------------------------------------------------------
    def copy_one(self, v, src: tuple[int, int, int], dst: tuple[int, int, int], length: int, flags: int) -> int:
        """gnttab_copy(): src/dst (ref or gfn, domid, offset); a gfn only for DOMID_SELF."""
        user = v.domain
        held: list[int] = []
        try:
            for (val, domid, _off), is_ref, write in ((src, flags & GNTCOPY_source_gref, False),
                                                       (dst, flags & GNTCOPY_dest_gref, True)):
                if not is_ref and domid != abi.DOMID_SELF:
                    return GNTST_permission_denied       # gnttab_copy_lock_domain()
                target = user.domid if domid == abi.DOMID_SELF else domid
                if target not in self.host.domains:
                    return GNTST_bad_domain
                if is_ref:
                    status, act = self._acquire(user.domid, target, val, write, False)
                    if status != GNTST_okay or act is None:
                        return status
                    mfn = act.mfn
                else:
                    found = self.own_frame(user, val)
                    if found is None:
                        self._debug(f"source frame {val:x} invalid")
                        return GNTST_bad_page
                    mfn = found
                self._get(mfn)
                held.append(mfn)
            if src[2] + length > PAGE_SIZE or dst[2] + length > PAGE_SIZE:
                self._debug("copy beyond page area")
                return GNTST_bad_copy_arg
            data = self.host.mem.read((held[0] << PAGE_SHIFT) + src[2], length)
            self.host.mem.write((held[1] << PAGE_SHIFT) + dst[2], data)
            self._event(v, "copy", None, None, held[1], flags, GNTST_okay)
            return GNTST_okay
        finally:
            for mfn in held:
                self._put(mfn)

    # -- events -------------------------------------------------------------------------------
    def _mapped(self, v, ref, granter, frame, flags, status) -> tuple[int, int, int]:
        self._event(v, "map_grant_ref", ref, granter, frame, flags, status)
        return status, 0, 0

    def _event(self, v, op, ref, granter, frame, flags, status) -> None:
        self.host.emit(v, "grant", op=op, ref=ref, granter=granter, frame=frame, flags=flags,
                       status=abi.GNTST_NAMES.get(status, status))


class StageTwoPage:
    """A backend's view of a granted page: every access goes IPA -> PA through the mapper's
    stage 2, so it works only while the mapping is there (as a Linux backend's would fault)."""

    def __init__(self, host, mapper: int, handle: int, mapping: ArmMapping) -> None:
        self.host = host
        self.mapper = mapper
        self.handle = handle
        self.mapping = mapping
        self.mfn = mapping.mfn

    @property
    def maddr(self) -> int:
        return self.mfn << PAGE_SHIFT

    def _base(self, off: int, n: int, write: bool) -> int:
        dom = self.host.domains.get(self.mapper)
        p2m = self.host.p2m(dom) if dom is not None else None
        m = self.mapping
        if p2m is None or p2m.lookup(m.gfn) != m.mfn or \
                self.host.grant_tables.maptrack.get(self.mapper, {}).get(self.handle) is not m:
            raise FrameReleased(f"grant ref {m.ref} of d{m.granter}: used after it was unmapped")
        if write and not m.writable:
            raise FrameReleased(f"grant ref {m.ref} of d{m.granter} is mapped read-only")
        if off < 0 or n < 0 or off + n > PAGE_SIZE:
            raise ValueError(f"bytes {off}..{off + n} are outside the page")
        return self.maddr + off

    def read(self, off: int, n: int) -> bytes:
        return self.host.mem.read(self._base(off, n, False), n)

    def write(self, off: int, data: bytes) -> None:
        self.host.mem.write(self._base(off, len(data), True), data)


# -- the hypercall ------------------------------------------------------------------------------
def grant_table_op(host, v, args, info, copy_from_guest, copy_to_guest) -> int | ArmContinuation:
    """GNTTABOP_map_grant_ref, unmap_grant_ref and copy, one entry at a time: each entry copied
    in, done and its status copied out before the next is read (do_grant_table_op())."""
    cmd, va, count = args[0], args[1], args[2] & 0xFFFFFFFF
    if count >> 31:
        return -E["EINVAL"]
    gt: ArmGrantTables = host.grant_tables
    one = {abi.GNTTABOP_map_grant_ref: _map_one, abi.GNTTABOP_unmap_grant_ref: _unmap_one,
           abi.GNTTABOP_copy: _copy_one}[cmd]
    size = GNTTABOP_LAYOUTS[cmd].size          # the same structs on arm64 as on x86-64
    info["args"].append(f"{count} op(s)")
    for i in range(count):
        if i and i % PREEMPT_EVERY == 0:
            return ArmContinuation([cmd, va + size * i, count - i])
        host.charge(v, "hypercall_batch_entry")
        one(v, gt, va + size * i, copy_from_guest, copy_to_guest)
        if not v.domain.alive:
            break
    return 0


def _map_one(v, gt: ArmGrantTables, base: int, cfg, ctg) -> None:
    host_addr, flags, ref, granter = struct.unpack("<QIIH", cfg(gt.host, v, base, 18))
    status, handle, bus = gt.map(v, host_addr, flags, ref, granter)
    ctg(gt.host, v, base + 18, struct.pack("<hIQ", status, handle, bus)[:14])


def _unmap_one(v, gt: ArmGrantTables, base: int, cfg, ctg) -> None:
    host_addr, _bus, handle = struct.unpack("<QQI", cfg(gt.host, v, base, 20))
    ctg(gt.host, v, base + 20, struct.pack("<h", gt.unmap(v, host_addr, handle)))


def _copy_one(v, gt: ArmGrantTables, base: int, cfg, ctg) -> None:
    s_val, s_dom, s_off, d_val, d_dom, d_off, length, flags = struct.unpack("<QHH4xQHH4xHH", cfg(gt.host, v, base, 36))
    ctg(gt.host, v, base + 36, struct.pack("<h", gt.copy_one(v, (s_val, s_dom, s_off), (d_val, d_dom, d_off),
                                                             length, flags)))
