"""XENMEM_*: a domain's memory, as the guest asks Xen about it (xen/common/memory.c, do_memory_op).
"""

from __future__ import annotations

import struct

from . import abi
from .guestmem import copy_from_guest, copy_to_guest
from .hvm import add_to_physmap
from .hypercall_table import Preempted, X86_HYPERCALLS
from .reservation import reservation_op

E = abi.ERRNO


@X86_HYPERCALLS.handler("memory_op", nargs=2)
def memory_op(host, v, args, info) -> int | Preempted:
    cmd, va = args[0] & abi.MEMOP_CMD_MASK, args[1]
    dom = v.domain
    info["args"] = [abi.XENMEM_NAMES.get(cmd, str(cmd)) if hasattr(abi, "XENMEM_NAMES") else cmd]
    if cmd == abi.XENMEM_add_to_physmap:
        return _add_to_physmap(host, v, va, info)
    if cmd in (abi.XENMEM_increase_reservation, abi.XENMEM_decrease_reservation, abi.XENMEM_populate_physmap):
        return reservation_op(host, v, args[0], va, info)
    if cmd in (abi.XENMEM_current_reservation, abi.XENMEM_maximum_reservation):
        domid = int.from_bytes(copy_from_guest(host, v, va, 2), "little")
        if domid not in (abi.DOMID_SELF, dom.domid):
            if not dom.privileged:
                return -E["EPERM"]
            dom = host.domains.get(domid)
            if dom is None:
                return -E["ESRCH"]
        return dom.mem_pages if cmd == abi.XENMEM_current_reservation else dom.max_pages
    if cmd == abi.XENMEM_maximum_ram_page:
        return host.mem.nr_frames - 1
    if cmd == abi.XENMEM_machphys_mapping:
        if dom.is_hvm:
            return -E["ENOSYS"]
        # arch_memory_op(): a domU is told the whole M2P area's size; the hardware domain
        # (with memory hot-plug off) the host's highest frame (x86_64/mm.c)
        max_mfn = host.mem.nr_frames - 1 if dom.privileged else abi.MACH2PHYS_NR_ENTRIES - 1
        copy_to_guest(host, v, va, struct.pack("<QQQ", abi.MACH2PHYS_VIRT_START, abi.MACH2PHYS_VIRT_END, max_mfn))
        return 0
    if cmd == abi.XENMEM_memory_map:
        return -E["ENOSYS"]
    return -E["ENOSYS"]


def _add_to_physmap(host, v, va: int, info: dict) -> int:
    """struct xen_add_to_physmap {domid_t domid; u16 size; u32 space; xen_ulong_t idx; xen_pfn_t gpfn}."""
    d, _size, space, idx, gpfn = struct.unpack("<HHIQQ", copy_from_guest(host, v, va, abi.XEN_ADD_TO_PHYSMAP_SIZE))
    dom = v.domain
    info["args"].append(f"{abi.XENMAPSPACE_NAMES.get(space, space)} idx {idx:#x} -> gpfn {gpfn:#x}")
    if space == abi.XENMAPSPACE_gmfn_foreign:
        return -E["ENOSYS"]                   # foreign frames only through add_to_physmap_batch
    target = dom if d in (abi.DOMID_SELF, dom.domid) else host.domains.get(d)
    if target is None:
        return -E["ESRCH"]
    if not target.is_hvm:
        info["why"] = "not a translated (HVM/PVH) domain"
        return -E["EACCES"]                   # xatp_permission_check(): !paging_mode_translate
    if target is not dom and not dom.privileged:
        info["why"] = "another domain's physmap (XSM_TARGET)"
        return -E["EPERM"]
    if gpfn == abi.INVALID_M2P_ENTRY:
        return -E["EINVAL"]                   # INVALID_GFN
    return add_to_physmap(host, target, space, idx, gpfn, info)
