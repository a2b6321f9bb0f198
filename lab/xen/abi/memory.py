"""memory_op: public/memory.h.
"""

from __future__ import annotations

from lab.xen.abi._names import collect

XENMEM_increase_reservation = 0
XENMEM_decrease_reservation = 1
XENMEM_maximum_ram_page = 2
XENMEM_current_reservation = 3
XENMEM_maximum_reservation = 4
XENMEM_machphys_mfn_list = 5
XENMEM_populate_physmap = 6
XENMEM_add_to_physmap = 7
XENMEM_memory_map = 9
XENMEM_machine_memory_map = 10
XENMEM_exchange = 11
XENMEM_machphys_mapping = 12
XENMEM_set_memory_map = 13
XENMEM_maximum_gpfn = 14
XENMEM_remove_from_physmap = 15
XENMEM_set_pod_target = 16
XENMEM_get_pod_target = 17
XENMEM_add_to_physmap_batch = 23
XENMEM_claim_pages = 24
XENMEM_machphys_compat_mfn_list = 25
XENMEM_get_vnumainfo = 26
XENMEM_reserved_device_memory_map = 27
XENMEM_acquire_resource = 28
XENMEM_NAMES: dict[int, str] = collect(globals(), "XENMEM_")
#: memory_op sub-ops an HVM guest may not use (-ENOSYS; hvm_memory_op).
HVM_DENIED_XENMEM = frozenset((XENMEM_machphys_mapping,))
#: The low bits of memory_op's cmd hold the sub-op; the rest is the
#: continuation's start extent (xen/include/xen/hypercall.h).
MEMOP_EXTENT_SHIFT = 6
MEMOP_CMD_MASK = (1 << MEMOP_EXTENT_SHIFT) - 1
# XENMEM_add_to_physmap spaces.
XENMAPSPACE_shared_info = 0
XENMAPSPACE_grant_table = 1
XENMAPSPACE_gmfn = 2
XENMAPSPACE_gmfn_range = 3
XENMAPSPACE_gmfn_foreign = 4
XENMAPSPACE_dev_mmio = 5
XENMAPSPACE_NAMES: dict[int, str] = collect(globals(), "XENMAPSPACE_")
#: idx bit of XENMAPSPACE_grant_table asking for a v2 status frame.
XENMAPIDX_grant_table_status = 0x80000000
#: struct xen_add_to_physmap {domid_t domid; u16 size; u32 space; xen_ulong_t idx; xen_pfn_t gpfn}.
XEN_ADD_TO_PHYSMAP_SIZE = 24
#: What mfn_to_gfn() gives for a frame mapped at no gfn (INVALID_M2P_ENTRY, ~0UL).
INVALID_M2P_ENTRY = 0xFFFF_FFFF_FFFF_FFFF
