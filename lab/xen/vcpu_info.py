"""Where each vCPU's ``vcpu_info`` lives, and VCPUOP_register_vcpu_info, which moves it.

Every vCPU starts with its ``vcpu_info`` (the upcall flags, the pending
selector, the PV CR2 slot, its time info) in the shared_info page, at
``vcpu_id * 64``. A guest may move it, once, into a page of its own
(``VCPUOP_register_vcpu_info``); Xen then keeps that page mapped, holding a
writable type reference on it, for as long as the domain lives. The checks
and errnos are ``do_vcpu_op()`` and ``map_guest_area()`` (xen/common/
domain.c): an address that overflows is -EINVAL, a second registration
-EBUSY, an area that crosses a page or is not aligned -ENXIO, a frame that
is not the domain's -EINVAL, one that cannot be written (a page table) -EACCES.
"""

from __future__ import annotations

import struct

from . import abi
E = abi.ERRNO
#: sizeof(struct vcpu_info) on x86-64 (public/xen.h); shared_info holds one per vCPU at the start.
VCPU_INFO_SIZE = 64
#: alignof(xen_ulong_t)
VCPU_INFO_ALIGN = 8
#: dom.extra keys: vcpu id -> the held page, and vcpu id -> the offset in it.
AREAS, OFFSETS = "vcpu_info_area", "vcpu_info_offset"


def maddr(host, dom, vcpu_id: int) -> int | None:
    """The machine address of the vCPU's vcpu_info (None while the domain has no shared_info)."""
    held = dom.extra.get(AREAS, {}).get(vcpu_id)
    if held is not None:
        return held.maddr + dom.extra[OFFSETS][vcpu_id]
    if not dom.shared_info_mfn:
        return None
    return (dom.shared_info_mfn << 12) + vcpu_id * VCPU_INFO_SIZE


def register(host, v, target, raw: bytes, info: dict) -> int:
    """VCPUOP_register_vcpu_info for ``target`` (a vCPU of the caller's domain)."""
    frame, offset, _rsvd = struct.unpack("<QII", raw)
    dom = target.domain
    gaddr = (frame << 12) + offset
    info["args"][2] = f"frame {frame:#x} offset {offset:#x}"
    if gaddr >= 1 << 64 or gaddr == (1 << 64) - 1 or gaddr >> 12 != frame:
        return -E["EINVAL"]
    if target.id in dom.extra.get(AREAS, {}):
        info["why"] = "vcpu_info is registered already (once only)"
        return -E["EBUSY"]
    if gaddr >> 12 != (gaddr + VCPU_INFO_SIZE - 1) >> 12 or gaddr % VCPU_INFO_ALIGN:
        info["why"] = "the area crosses a page boundary or is not aligned"
        return -E["ENXIO"]
    holder = f"d{dom.domid}v{target.id} vcpu_info"
    pv = host.mm.pv
    if dom.is_pv:
        mfn = frame
    else:
        mfn = dom.gfn_to_mfn(frame) if frame < 1 << 52 else None
        if mfn is None:
            return -E["EINVAL"]
    if not pv.valid(mfn) or not pv.get_page(mfn, dom.domid):
        info["why"] = "not a frame of the domain's"
        return -E["EINVAL"]
    pv.put_page(mfn)
    held = host.frames.hold(dom.domid, mfn, writable=True, holder=holder)
    if isinstance(held, int):
        info["why"] = "the frame cannot be written (a page table, a descriptor table)"
        return -E["EACCES"]
    old = maddr(host, dom, target.id)
    current = host.mem.read(old, VCPU_INFO_SIZE) if old is not None else bytes(VCPU_INFO_SIZE)
    held.write(offset & 0xFFF, current)                       # vcpu_info_populate()
    dom.extra.setdefault(AREAS, {})[target.id] = held
    dom.extra.setdefault(OFFSETS, {})[target.id] = offset & 0xFFF
    # Pending flags are set after the move, so the guest rescans every port.
    held.write((offset & 0xFFF) + 8, struct.pack("<Q", (1 << 64) - 1))
    host.evtchn.mark_pending(host, target)
    return 0
