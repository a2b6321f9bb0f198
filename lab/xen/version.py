"""XENVER_*: what Xen tells a guest about itself (xen/common/kernel.c, do_xen_version).

Common code: the handler registers into every architecture's hypercall table,
and asks the host for what is its architecture's: ``xen_caps``, and for
XENVER_get_features whether a domain is translated and direct mapped and the
bits kernel.c sets under ``CONFIG_X86`` or ``CONFIG_ARM`` (``arch_guest_features``).
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
        features = guest_features(host, v.domain)
        # xen_feature_info_t {u32 submap_idx; u32 submap}
        idx = int.from_bytes(host.hypercalls.copy_from_guest(host, v, va, 4), "little")
        info["args"].append(f"submap {idx}")
        if idx >= abi.XENFEAT_NR_SUBMAPS:
            return -E["EINVAL"]
        copy_to_guest(host, v, va + 4, features.to_bytes(4, "little"))
        return 0
    return -E["ENOSYS"]


def guest_features(host, dom) -> int:
    """Sub-map 0 of XENVER_get_features as xen/common/kernel.c builds it, on every architecture.

    Translated guests (x86's HVM and PVH, every Arm guest) get writable_page_tables and
    auto_translated_physmap; a guest whose frames are machine frames (x86 PV, Arm's dom0
    mapped 1:1) is "direct mapped", any other translated one not. What only one
    architecture sets (under CONFIG_X86 or CONFIG_ARM there) the host adds.
    """
    feats = (1 << abi.XENFEAT_memory_op_vnode_supported) | (1 << abi.XENFEAT_runstate_phys_area)
    if dom.vm_assist & (1 << abi.VMASST_TYPE_pae_extended_cr3):
        feats |= 1 << abi.XENFEAT_pae_pgdir_above_4gb
    translated = host.paging_mode_translate(dom)
    if translated:
        feats |= (1 << abi.XENFEAT_writable_page_tables) | (1 << abi.XENFEAT_auto_translated_physmap)
    if dom.privileged:
        feats |= 1 << abi.XENFEAT_dom0
    feats |= host.arch_guest_features(dom)
    if not translated or host.is_domain_direct_mapped(dom):
        feats |= 1 << abi.XENFEAT_direct_mapped
    else:
        feats |= 1 << abi.XENFEAT_not_direct_mapped
    return feats
