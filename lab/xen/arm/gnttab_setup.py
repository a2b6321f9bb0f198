"""GNTTABOP_setup_table on Arm: common code's answer for a translated guest.

``gnttab_setup_table()`` (``xen/common/grant_table.c``) is the same on every
architecture: one op only (count != 1 is -EINVAL), the domain named by ``dom``
(DOMID_SELF or, for a privileged caller, another; none is GNTST_bad_domain,
someone else's without privilege GNTST_permission_denied, xsm_grant_setup),
more frames than ``max_grant_frames`` GNTST_general_error, the table grown to
``nr_frames`` (gnttab_grow_table(); failing, GNTST_general_error), then one
``xen_pfn_t`` per frame into ``frame_list``: ``gnttab_shared_gfn(d, gt, i)``.

What an Arm guest gets there is the difference. On x86 a PV guest is given
machine frames to map; on Arm ``gnttab_shared_gfn`` is
``page_get_xenheap_gfn()`` (``xen/arch/arm/include/asm/grant_table.h``): the
guest frame where the guest itself placed that grant frame with
XENMEM_add_to_physmap(XENMAPSPACE_grant_table), or INVALID_GFN (all ones)
for a frame it has not placed. So the call tells an Arm guest nothing it could
map: it must place its frames itself, which is why Linux on Arm never uses it.
A frame_list Xen cannot write is GNTST_bad_virt_addr (``guest_handle_okay`` is
always true on Arm: the copy is what fails), a status it cannot write -EFAULT.
"""

from __future__ import annotations

import struct

from .. import abi
from ..abi.grant_table import (GNTST_bad_domain, GNTST_bad_virt_addr, GNTST_general_error, GNTST_okay,
                               GNTST_permission_denied)
from ..guestmem import GuestFault

E = abi.ERRNO
#: INVALID_GFN (xen/include/xen/mm.h): _gfn(~0UL).
INVALID_GFN = (1 << 64) - 1


def setup_table(host, v, va: int, count: int, info: dict, copy_from_guest, copy_to_guest) -> int:
    """GNTTABOP_setup_table for an Arm guest; the hypercall's return value."""
    if count != 1:
        return -E["EINVAL"]
    dom_id, nr_frames, _status, frame_list = struct.unpack("<HxxIhxxxxxxQ", copy_from_guest(host, v, va, 24))
    info["args"].append(f"d{dom_id:#x} nr_frames {nr_frames}")
    caller = v.domain
    target = caller if dom_id in (abi.DOMID_SELF, caller.domid) else host.domains.get(dom_id)
    if target is None:
        status = GNTST_bad_domain
    elif target is not caller and not caller.privileged:
        status = GNTST_permission_denied                  # xsm_grant_setup(XSM_TARGET, ...)
    else:
        status = _frames(host, target, nr_frames, frame_list, info, v, copy_to_guest)
    info["status"] = abi.GNTST_NAMES.get(status, status)
    try:
        copy_to_guest(host, v, va + 8, struct.pack("<h", status))
    except GuestFault:
        return -E["EFAULT"]
    return 0


def _frames(host, dom, nr_frames: int, frame_list: int, info: dict, v, copy_to_guest) -> int:
    if nr_frames > dom.max_grant_frames:
        host.log(f"common/grant_table.c:2116: d{dom.domid} is limited to {dom.max_grant_frames} "
                 "grant-table frames")
        return GNTST_general_error
    frames = dom.extra.setdefault("gnttab_frames", {})
    current = max(frames) + 1 if frames else 1               # a table has its first frame from creation
    if nr_frames > current and not _grow(host, frames, nr_frames):
        host.log(f"common/grant_table.c:2135: Expand grant table of d{dom.domid} to {nr_frames} failed. "
                 f"Current: {current} Max: {dom.max_grant_frames}")
        return GNTST_general_error
    placed = dom.extra.get("physmap_of", {})
    gfns = [placed.get(frames[i], INVALID_GFN) if i in frames else INVALID_GFN for i in range(nr_frames)]
    info["frames"] = ["INVALID_GFN" if g == INVALID_GFN else f"{g:#x}" for g in gfns]
    for i, gfn in enumerate(gfns):
        try:
            copy_to_guest(host, v, frame_list + 8 * i, gfn.to_bytes(8, "little"))
        except GuestFault:
            return GNTST_bad_virt_addr
    return GNTST_okay


def _grow(host, frames: dict[int, int], nr_frames: int) -> bool:
    """gnttab_grow_table(): Xen heap frames for every index up to ``nr_frames``, or none at all."""
    missing = [i for i in range(nr_frames) if i not in frames]
    if len(missing) > len(host.free_frames):
        return False
    for i in missing:
        frames[i] = host.alloc_frame(None)
    return True
