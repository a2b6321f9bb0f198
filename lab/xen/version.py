"""XENVER_*: what Xen tells a guest about itself (xen/common/kernel.c, do_xen_version).

Common code: the handler registers into every architecture's hypercall table,
and asks the host for what is its architecture's (``xen_caps``, and
``guest_features``: x86's below; the lab does not model Arm's yet).
"""

from __future__ import annotations

from . import abi
from .hypercall_table import ARM_HYPERCALLS, X86_HYPERCALLS
from .release import XEN_VERSION

E = abi.ERRNO


@X86_HYPERCALLS.handler("xen_version", nargs=2)
@ARM_HYPERCALLS.handler("xen_version", nargs=2)
def xen_version(host, v, args, info) -> int:
    cmd, va = args[0], args[1]
    copy_to_guest = host.hypercalls.copy_to_guest
    info["args"] = [abi.XENVER_NAMES.get(cmd, str(cmd)) if hasattr(abi, "XENVER_NAMES") else cmd]
    if cmd == abi.XENVER_version:
        return (XEN_VERSION[0] << 16) | XEN_VERSION[1]
    if cmd == abi.XENVER_extraversion:
        copy_to_guest(host, v, va, XEN_VERSION[2].encode().ljust(16, b"\0"))
        return 0
    if cmd == abi.XENVER_capabilities:
        copy_to_guest(host, v, va, host.xen_caps.encode().ljust(1024, b"\0"))
        return 0
    if cmd == abi.XENVER_pagesize:
        return 4096
    if cmd == abi.XENVER_get_features:
        features = host.guest_features(v.domain)
        if features is None:
            return -E["ENOSYS"]                 # not modelled on this architecture
        # xen_feature_info_t {u32 submap_idx; u32 submap}
        idx = int.from_bytes(host.hypercalls.copy_from_guest(host, v, va, 4), "little")
        info["args"].append(f"submap {idx}")
        if idx >= abi.XENFEAT_NR_SUBMAPS:
            return -E["EINVAL"]
        copy_to_guest(host, v, va + 4, features.to_bytes(4, "little"))
        return 0
    return -E["ENOSYS"]


def guest_features(dom) -> int:
    """Sub-map 0 of XENVER_get_features as xen/common/kernel.c builds it for an x86 guest.

    Translated guests (HVM, PVH) get writable_page_tables and auto_translated_physmap; PV
    guests get the direct-paging extras instead (preserved A/D bits, highmem assist, grant
    map available bits). ``hvm_pirqs`` needs XEN_X86_EMU_USE_PIRQ, which libxl leaves off
    unless the config asks for it, and the lab has no such option.
    """
    feats = ((1 << abi.XENFEAT_memory_op_vnode_supported) | (1 << abi.XENFEAT_vcpu_time_phys_area)
             | (1 << abi.XENFEAT_runstate_phys_area) | (1 << abi.XENFEAT_dm_msix_all_writes))
    if dom.vm_assist & (1 << abi.VMASST_TYPE_pae_extended_cr3):
        feats |= 1 << abi.XENFEAT_pae_pgdir_above_4gb
    translated = not dom.is_pv
    if translated:
        feats |= (1 << abi.XENFEAT_writable_page_tables) | (1 << abi.XENFEAT_auto_translated_physmap)
    if dom.privileged:
        feats |= 1 << abi.XENFEAT_dom0
    if dom.is_pv:
        feats |= ((1 << abi.XENFEAT_mmu_pt_update_preserve_ad) | (1 << abi.XENFEAT_highmem_assist)
                  | (1 << abi.XENFEAT_gnttab_map_avail_bits))
    else:
        feats |= (1 << abi.XENFEAT_hvm_safe_pvclock) | (1 << abi.XENFEAT_hvm_callback_vector)
    # A PV guest's frames are machine frames: "direct mapped" in the features' sense.
    feats |= 1 << (abi.XENFEAT_direct_mapped if not translated else abi.XENFEAT_not_direct_mapped)
    return feats
