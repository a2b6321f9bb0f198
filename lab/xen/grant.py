"""Grant tables, version 1: how one domain lets another reach a page of its memory.

The granting guest writes entries into its grant table (frames Xen gives it
with ``GNTTABOP_setup_table``; an HVM or PVH guest puts them into its own
physical address space with ``XENMEM_add_to_physmap``, XENMAPSPACE_grant_table,
and setup_table tells it only their gfns): ``u16 flags; u16 domid; u32
frame``, 512 to a page, entries 0-7 reserved. Another domain may then map (``map_grant_ref``)
or copy (``copy``) that frame, and only while the entry says so:

* the entry must permit access (type GTF_permit_access) to *that* domain;
* a read-only grant (GTF_readonly) can only be mapped read-only;
* while mapped, Xen sets GTF_reading / GTF_writing in the entry so the
  granter can see its page is in use;
* a mapping of a grant is the only way a domain's page tables may point at
  another domain's frame: Xen's page-type rules (``lab/xen/mm.py``) ask this
  module through their ``foreign_ok`` hook.

Status codes are Xen's GNTST values. The lab's backends run in dom0 as Python
services; they map grants through :meth:`GrantTables.map_for_service`, which
makes the same checks and the same trace events.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from . import abi
from .guestmem import copy_from_guest, copy_to_guest
from .hypercalls import handler

ENTRY_SIZE = 8
ENTRIES_PER_FRAME = 4096 // ENTRY_SIZE
MAX_FRAMES = 64                       # Xen's default gnttab_max_frames
GTF_type_mask = 3
GTF_permit_access = 1
GTF_readonly = 0x4
GTF_reading = 0x8
GTF_writing = 0x10
GNTMAP_device_map, GNTMAP_host_map, GNTMAP_readonly = 1, 2, 4
GNTCOPY_source_gref, GNTCOPY_dest_gref = 1, 2
PTE_P, PTE_RW, PTE_US, PTE_NX = 1, 2, 4, 1 << 63

OKAY, GENERAL_ERROR, BAD_DOMAIN, BAD_GNTREF, BAD_HANDLE, BAD_VIRT_ADDR = 0, -1, -2, -3, -4, -5
PERMISSION_DENIED, BAD_PAGE, BAD_COPY_ARG = -8, -9, -10


@dataclass
class Mapping:
    mapper: int
    granter: int
    ref: int
    mfn: int
    writable: bool
    host_addr: int          # 0 for a service (no page-table entry)


class GrantTables:
    def __init__(self, host) -> None:
        self.host = host
        self.frames: dict[int, list[int]] = {}        # granter -> grant table frames (mfns)
        self.maptrack: dict[int, dict[int, Mapping]] = {}
        self.next_handle: dict[int, int] = {}

    # -- the granter's table ------------------------------------------------
    def setup_table(self, domid: int, nr: int) -> tuple[int, list[int]]:
        if not 1 <= nr <= MAX_FRAMES:
            return GENERAL_ERROR, []
        frames = self.frames.setdefault(domid, [])
        while len(frames) < nr:
            frames.append(self.host.alloc_frame(domid))
        return OKAY, frames[:nr]

    def frame_for_physmap(self, domid: int, idx: int) -> int | None:
        """gnttab_get_shared_frame_mfn(): frame ``idx``, growing the table up to its maximum."""
        frames = self.frames.setdefault(domid, [])
        if idx >= len(frames):
            if idx + 1 > MAX_FRAMES:
                return None
            self.setup_table(domid, idx + 1)
        return frames[idx]

    def _entry_addr(self, granter: int, ref: int) -> int | None:
        frames = self.frames.get(granter, [])
        idx, slot = divmod(ref, ENTRIES_PER_FRAME)
        if ref < 0 or idx >= len(frames):
            return None
        return (frames[idx] << 12) + slot * ENTRY_SIZE

    def read_entry(self, granter: int, ref: int) -> tuple[int, int, int] | None:
        addr = self._entry_addr(granter, ref)
        if addr is None:
            return None
        return struct.unpack("<HHI", self.host.mem.read(addr, 8))

    def _set_flags(self, granter: int, ref: int, set_bits: int, clear_bits: int) -> None:
        addr = self._entry_addr(granter, ref)
        if addr is None:
            return
        flags = int.from_bytes(self.host.mem.read(addr, 2), "little")
        self.host.mem.write(addr, ((flags | set_bits) & ~clear_bits).to_bytes(2, "little"))

    def _granted_mfn(self, granter_dom, frame: int) -> int | None:
        if granter_dom.is_pv:
            return frame if self.host.mm.pv.pages[frame].owner == granter_dom.domid else None
        return granter_dom.gfn_to_mfn(frame)

    # -- checks shared by map and copy ----------------------------------------
    def _check(self, user: int, granter: int, ref: int, write: bool) -> tuple[int, int | None]:
        gdom = self.host.domains.get(granter)
        if gdom is None or not gdom.alive:
            return BAD_DOMAIN, None
        entry = self.read_entry(granter, ref)
        if entry is None or ref < 0:
            return BAD_GNTREF, None
        flags, domid, frame = entry
        if flags & GTF_type_mask != GTF_permit_access or domid != user:
            return PERMISSION_DENIED, None
        if write and flags & GTF_readonly:
            return PERMISSION_DENIED, None
        mfn = self._granted_mfn(gdom, frame)
        if mfn is None:
            return BAD_PAGE, None
        return OKAY, mfn

    # -- mapping ------------------------------------------------------------
    def map(self, v, host_addr: int, flags: int, ref: int, granter: int) -> tuple[int, int, int]:
        user = v.domain.domid
        readonly = bool(flags & GNTMAP_readonly)
        if not flags & (GNTMAP_host_map | GNTMAP_device_map):
            return GENERAL_ERROR, 0, 0
        status, mfn = self._check(user, granter, ref, not readonly)
        if status != OKAY:
            self._event(v, "map_grant_ref", ref, granter, None, flags, status)
            return status, 0, 0
        if flags & GNTMAP_host_map:
            if not v.domain.is_pv:
                # HVM and PVH domains map grants into their p2m; the lab's
                # backends all run in dom0, a PV domain, so this is not modelled.
                self._event(v, "map_grant_ref", ref, granter, mfn, flags, GENERAL_ERROR)
                return GENERAL_ERROR, 0, 0
        handle = self.next_handle.get(user, 0)
        self.next_handle[user] = handle + 1
        m = Mapping(user, granter, ref, mfn, not readonly, host_addr if flags & GNTMAP_host_map else 0)
        self.maptrack.setdefault(user, {})[handle] = m
        if m.host_addr:
            val = (mfn << 12) | PTE_P | PTE_US | PTE_NX | (0 if readonly else PTE_RW)
            rc = self.host.mm.update_va_mapping(v, host_addr, val, abi.UVMF_INVLPG)
            if rc != 0:
                del self.maptrack[user][handle]
                self._event(v, "map_grant_ref", ref, granter, mfn, flags, BAD_VIRT_ADDR)
                return BAD_VIRT_ADDR, 0, 0
        self._set_flags(granter, ref, GTF_reading | (0 if readonly else GTF_writing), 0)
        self._event(v, "map_grant_ref", ref, granter, mfn, flags, OKAY)
        return OKAY, handle, (mfn << 12) if flags & GNTMAP_device_map else 0

    def unmap(self, v, host_addr: int, handle: int) -> int:
        user = v.domain.domid
        m = self.maptrack.get(user, {}).get(handle)
        if m is None:
            self._event(v, "unmap_grant_ref", None, None, None, None, BAD_HANDLE)
            return BAD_HANDLE
        if m.host_addr:
            if host_addr != m.host_addr:
                self._event(v, "unmap_grant_ref", m.ref, m.granter, m.mfn, None, BAD_VIRT_ADDR)
                return BAD_VIRT_ADDR
            del self.maptrack[user][handle]
            self.host.mm.update_va_mapping(v, host_addr, 0, abi.UVMF_INVLPG)
        else:
            del self.maptrack[user][handle]
        self._release_flags(m)
        self._event(v, "unmap_grant_ref", m.ref, m.granter, m.mfn, None, OKAY)
        return OKAY

    def _release_flags(self, m: Mapping) -> None:
        others = [x for t in self.maptrack.values() for x in t.values() if x.granter == m.granter and x.ref == m.ref]
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

    def foreign_ok(self, domid: int, mfn: int, writable: bool) -> bool:
        """Xen's page-type rules ask: may ``domid`` map ``mfn``? Only through a live grant mapping."""
        return any(m.mfn == mfn and (m.writable or not writable) for m in self.maptrack.get(domid, {}).values())

    def domain_gone(self, dom) -> None:
        for handle, m in sorted(self.maptrack.pop(dom.domid, {}).items()):
            self._release_flags(m)
        self.frames.pop(dom.domid, None)

    # -- copy -----------------------------------------------------------------
    def copy_one(self, v, src: tuple[int, int, int], dst: tuple[int, int, int], length: int,
                 flags: int) -> int:
        """src/dst: (ref-or-frame, domid, offset). GNTCOPY_source_gref/dest_gref say which is a ref."""
        user = v.domain
        if length > 4096 or src[2] + length > 4096 or dst[2] + length > 4096:
            return BAD_COPY_ARG
        addrs = []
        for (val, domid, off), is_ref, write in ((src, flags & GNTCOPY_source_gref, False),
                                                 (dst, flags & GNTCOPY_dest_gref, True)):
            domid = user.domid if domid == abi.DOMID_SELF else domid
            if is_ref:
                status, mfn = self._check(user.domid, domid, val, write)
                if status != OKAY:
                    return status
            else:
                if domid != user.domid and not user.privileged:
                    return PERMISSION_DENIED
                dom = self.host.domains.get(domid)
                if dom is None:
                    return BAD_DOMAIN
                mfn = self._granted_mfn(dom, val)
                if mfn is None:
                    return BAD_PAGE
            addrs.append((mfn << 12) + off)
        data = self.host.mem.read(addrs[0], length)
        self.host.mem.write(addrs[1], data)
        return OKAY

    def _event(self, v, op, ref, granter, frame, flags, status) -> None:
        self.host.emit(v, "grant", op=op, ref=ref, granter=granter, frame=frame, flags=flags,
                       status=abi.gntst_name(status) if hasattr(abi, "gntst_name") else status)


def _tables(host) -> GrantTables:
    gt = host.services.get("grant_tables")
    if gt is None:
        gt = host.services["grant_tables"] = GrantTables(host)
        host.mm.pv.foreign_ok = gt.foreign_ok
    return gt


@handler("grant_table_op")
def grant_table_op(host, v, args, info) -> int:
    cmd, va, count = args[0], args[1], args[2] & 0xFFFFFFFF
    name = abi.GNTTABOP_NAMES.get(cmd, str(cmd)) if hasattr(abi, "GNTTABOP_NAMES") else str(cmd)
    info["args"] = [name, f"{count} op(s)"]
    if v.domain.is_hvm and cmd not in abi.HVM_ALLOWED_GNTTABOP:
        return -abi.ERRNO["ENOSYS"]
    gt = _tables(host)
    dom = v.domain
    if cmd == abi.GNTTABOP_setup_table:
        d, nr = struct.unpack("<HxxI", copy_from_guest(host, v, va, 8))
        frame_list = int.from_bytes(copy_from_guest(host, v, va + 16, 8), "little")
        if d not in (abi.DOMID_SELF, dom.domid) and not dom.privileged:
            copy_to_guest(host, v, va + 8, struct.pack("<h", PERMISSION_DENIED))
            return 0
        target = dom.domid if d == abi.DOMID_SELF else d
        tdom = host.domains.get(target)
        if tdom is None:
            copy_to_guest(host, v, va + 8, struct.pack("<h", BAD_DOMAIN))
            return 0
        status, frames = gt.setup_table(target, nr)
        copy_to_guest(host, v, va + 8, struct.pack("<h", status))
        for i, mfn in enumerate(frames):
            # gnttab_shared_gfn(): a PV domain gets the mfn; a translated one the gfn where
            # the frame sits in its physmap (after XENMEM_add_to_physmap), else INVALID_GFN.
            gfn = mfn if tdom.is_pv else host.mm.pv.m2p.get(mfn, abi.INVALID_M2P_ENTRY)
            copy_to_guest(host, v, frame_list + 8 * i, gfn.to_bytes(8, "little"))
        return 0
    if cmd == abi.GNTTABOP_query_size:
        d = int.from_bytes(copy_from_guest(host, v, va, 2), "little")
        target = dom.domid if d == abi.DOMID_SELF else d
        copy_to_guest(host, v, va + 4, struct.pack("<IIh", len(gt.frames.get(target, [])), MAX_FRAMES, OKAY))
        return 0
    if cmd == abi.GNTTABOP_map_grant_ref:
        for i in range(count):
            base = va + 32 * i
            host_addr, flags, ref, granter = struct.unpack("<QIIH", copy_from_guest(host, v, base, 18))
            status, handle, bus = gt.map(v, host_addr, flags, ref, granter)
            copy_to_guest(host, v, base + 18, struct.pack("<hIQ", status, handle, bus)[:14])
        return 0
    if cmd == abi.GNTTABOP_unmap_grant_ref:
        for i in range(count):
            base = va + 24 * i
            host_addr, _bus, handle = struct.unpack("<QQI", copy_from_guest(host, v, base, 20))
            status = gt.unmap(v, host_addr, handle)
            copy_to_guest(host, v, base + 20, struct.pack("<h", status))
        return 0
    if cmd == abi.GNTTABOP_copy:
        for i in range(count):
            base = va + 40 * i
            raw = copy_from_guest(host, v, base, 36)
            s_val, s_dom, s_off, d_val, d_dom, d_off, length, flags = struct.unpack("<QHH4xQHH4xHH", raw)
            status = gt.copy_one(v, (s_val, s_dom, s_off), (d_val, d_dom, d_off), length, flags)
            copy_to_guest(host, v, base + 36, struct.pack("<h", status))
        return 0
    return -abi.ERRNO["ENOSYS"]

