"""HVMOP_*: an HVM or PVH guest's parameters and event upcall (xen/arch/x86/hvm/hvm.c, do_hvm_op).
"""

from __future__ import annotations

import struct

from . import abi, hvm_params
from .guestmem import copy_from_guest, copy_to_guest
from .hvm import set_callback_via, set_upcall_vector
from .hypercall_table import X86_HYPERCALLS

E = abi.ERRNO


@X86_HYPERCALLS.handler("hvm_op", nargs=2)
def hvm_op(host, v, args, info) -> int:
    cmd, va = args[0], args[1]
    dom = v.domain
    info["args"] = [abi.HVMOP_NAMES.get(cmd, str(cmd))]
    if cmd in (abi.HVMOP_set_param, abi.HVMOP_get_param):
        d, idx, value = struct.unpack("<H2xIQ", copy_from_guest(host, v, va, 16))
        info["args"].append(abi.HVM_PARAM_NAMES.get(idx, str(idx)))
        if idx >= abi.HVM_NR_PARAMS:
            return -E["EINVAL"]
        target = dom if d in (abi.DOMID_SELF, dom.domid) else host.domains.get(d)
        if target is None:
            return -E["ESRCH"]
        if target is not dom and not dom.privileged:
            info["why"] = "another domain's params (XSM_TARGET)"
            return -E["EPERM"]
        if not target.is_hvm:
            return -E["EINVAL"]
        if cmd == abi.HVMOP_get_param:
            rc = hvm_params.allow_get(dom, target, idx)        # hvm_allow_get_param()
            if rc:
                return rc
            copy_to_guest(host, v, va + 8, target.hvm_params.get(idx, 0).to_bytes(8, "little"))
            return 0
        rc = hvm_params.allow_set(dom, target, idx, value)     # hvm_allow_set_param()
        if rc == 0:
            rc, crash = hvm_params.check_value(dom, target, idx, value)
            if crash:
                host.crash(dom, f"HVMOP_set_param {abi.HVM_PARAM_NAMES.get(idx, idx)} {value:#x}: does not fit", v)
        if rc:
            return rc
        target.hvm_params[idx] = value
        if idx == abi.HVM_PARAM_CALLBACK_IRQ:
            info["args"].append(f"{value:#x}")
            set_callback_via(host, target, value)
        return 0
    if cmd == abi.HVMOP_set_evtchn_upcall_vector:
        # struct xen_hvm_evtchn_upcall_vector {u32 vcpu; u8 vector}
        vcpu, vector = struct.unpack("<IB", copy_from_guest(host, v, va, 5))
        info["args"].append(f"vcpu {vcpu} vector {vector:#x}")
        return set_upcall_vector(host, dom, vcpu, vector)
    if cmd in (abi.HVMOP_set_pci_intx_level, abi.HVMOP_set_isa_irq_level, abi.HVMOP_set_pci_link_route):
        # public/hvm/hvm_op.h keeps them for __XEN_INTERFACE_VERSION__ < 0x00040900 only: Xen 4.9
        # made them dm_ops (XEN_DMOP_*, lab/xen/dm_op.py) and do_hvm_op() no longer knows them
        info["why"] = "a dm_op since Xen 4.9 (XEN_DMOP_*)"
    return -E["ENOSYS"]
