"""dm_op from guest code: a device model's operations on the domain it serves
(xen/common/dm.c do_dm_op, xen/arch/x86/hvm/dm.c dm_op).

``dm_op(domid, nr_bufs, bufs)``: ``bufs`` is an array of ``struct
xen_dm_op_buf {XEN_GUEST_HANDLE(void) h; xen_ulong_t size}`` (16 bytes each,
at most two), and the first buffer holds ``struct xen_dm_op {uint32_t op;
uint32_t pad; union u}``. Only the device model of the target may call it:
the control domain, or a stub domain whose ``target`` is that domain
(XSM_DM_PRIV); a domain never on itself. The lab's QEMU in dom0 makes its
dm_ops from Python (``lab/dom0/qemu.py``); what a guest's kernel may ask is
the operation the lab implements for it here, ``XEN_DMOP_set_pci_link_route``
(the PIIX3's PIRQ routing that QEMU passes on when hvmloader writes it).
The lab answers every other operation -EOPNOTSUPP, as Xen answers an unknown
one: a simplification for the ones Xen has (ioreq servers, memory types...).
"""

from __future__ import annotations

import struct

from . import abi
from .guestmem import copy_from_guest
from .hypercall_table import X86_HYPERCALLS
from .vdev import irq as hvm_irq

E = abi.ERRNO

#: public/hvm/dm_op.h
XEN_DMOP_set_pci_link_route = 10
#: struct xen_dm_op: op, pad, then the union
DM_OP_HEADER = 8
#: xen/include/xen/dm.h: struct dmop_args holds two buffers
DMOP_MAX_BUFS = 2
DM_OP_BUF_SIZE = 16
#: dm.c op_size[]: the sub-ops the lab knows and the size of their union member
OP_SIZE = {XEN_DMOP_set_pci_link_route: 2}     # struct xen_dm_op_set_pci_link_route {u8 link; u8 isa_irq}
OP_NAMES = {XEN_DMOP_set_pci_link_route: "XEN_DMOP_set_pci_link_route"}


@X86_HYPERCALLS.handler("dm_op", nargs=3)
def dm_op(host, v, args, info) -> int:
    domid, nr_bufs, bufs = args[0] & 0xFFFF, args[1] & 0xFFFFFFFF, args[2]
    info["args"] = [f"d{domid}", nr_bufs]
    # do_dm_op()
    if not nr_bufs:
        return -E["ENODATA"]
    if nr_bufs > DMOP_MAX_BUFS:
        return -E["E2BIG"]
    h, size = struct.unpack("<QQ", copy_from_guest(host, v, bufs, DM_OP_BUF_SIZE))
    # dm_op(): rcu_lock_remote_domain_by_id(), is_hvm_domain(), xsm_dm_op(XSM_DM_PRIV)
    target = host.domains.get(domid)
    if target is None:
        return -E["ESRCH"]
    if target is v.domain:
        info["why"] = "a domain's own device model is another domain"
        return -E["EPERM"]
    if not target.is_hvm:
        return -E["EINVAL"]
    if not v.domain.privileged:
        info["why"] = "not the target's device model (XSM_DM_PRIV)"
        return -E["EPERM"]
    if size < DM_OP_HEADER:
        return -E["EFAULT"]
    op, pad = struct.unpack("<II", copy_from_guest(host, v, h, DM_OP_HEADER))
    info["args"][1:] = [OP_NAMES.get(op, str(op))]
    if op not in OP_SIZE:
        info["why"] = "not a dm_op the lab implements for guest code"
        return -E["EOPNOTSUPP"]
    if size < DM_OP_HEADER + OP_SIZE[op]:
        return -E["EFAULT"]
    body = copy_from_guest(host, v, h + DM_OP_HEADER, OP_SIZE[op])
    if pad:
        return -E["EINVAL"]
    link, isa_irq = body[0], body[1]
    info["args"] += [link, isa_irq]
    return hvm_irq.set_pci_link_route(host, target, link, isa_irq)
