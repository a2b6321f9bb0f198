"""XENMEM_*: a domain's memory, as the guest asks Xen about it (xen/common/memory.c, do_memory_op).

Common code: ``memory_op`` registers into every architecture's hypercall table
and asks the host for its architecture's part (x86's is below; Arm's in
``lab/xen/arm/host.py``).
"""

from __future__ import annotations

import struct

from . import abi
from .hypercall_table import ARM_HYPERCALLS, Preempted, X86_HYPERCALLS

E = abi.ERRNO


@X86_HYPERCALLS.handler("memory_op", nargs=2)
@ARM_HYPERCALLS.handler("memory_op", nargs=2)
def memory_op(host, v, args, info) -> int | Preempted:
    """do_memory_op(): the common sub-ops here; the host's architecture adds its own
    (``xenmem_add_to_physmap``'s checks and mapping, ``reservation_op``, ``arch_memory_op``)."""
    cmd, va = args[0] & abi.MEMOP_CMD_MASK, args[1]
    dom = v.domain
    info["args"] = [abi.XENMEM_NAMES.get(cmd, str(cmd)) if hasattr(abi, "XENMEM_NAMES") else cmd]
    if cmd == abi.XENMEM_add_to_physmap:
        # struct xen_add_to_physmap {domid_t domid; u16 size; u32 space; xen_ulong_t idx; xen_pfn_t gpfn}
        raw = host.hypercalls.copy_from_guest(host, v, va, abi.XEN_ADD_TO_PHYSMAP_SIZE)
        d, _size, space, idx, gpfn = struct.unpack("<HHIQQ", raw)
        info["args"].append(f"{abi.XENMAPSPACE_NAMES.get(space, space)} idx {idx:#x} -> gpfn {gpfn:#x}")
        return host.xenmem_add_to_physmap(v, d, space, idx, gpfn, info)
    if cmd in (abi.XENMEM_increase_reservation, abi.XENMEM_decrease_reservation, abi.XENMEM_populate_physmap):
        return host.reservation_op(v, args[0], va, info)
    if cmd in (abi.XENMEM_current_reservation, abi.XENMEM_maximum_reservation):
        domid = int.from_bytes(host.hypercalls.copy_from_guest(host, v, va, 2), "little")
        if domid not in (abi.DOMID_SELF, dom.domid):
            if not dom.privileged:
                return -E["EPERM"]
            dom = host.domains.get(domid)
            if dom is None:
                return -E["ESRCH"]
        return dom.mem_pages if cmd == abi.XENMEM_current_reservation else dom.max_pages
    if cmd == abi.XENMEM_maximum_ram_page:
        return host.mem.nr_frames - 1
    return host.arch_memory_op(v, cmd, va, info)
