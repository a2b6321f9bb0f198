"""Hypercalls on Arm: ``hvc #0xEA1``, the number in x16, arguments in x0-x4, the result in x0.

The numbers, names and errnos are Xen's common ones (``lab/xen/abi``); which
of them an Arm guest may make is the ``arm`` column of
``xen/include/hypercall-defs.c``, the Arm host's table
(``ARM_HYPERCALLS`` in ``lab/xen/hypercall_table.py``), into which the
handlers here register: anything else is -ENOSYS, as ``call_handlers_arm()``
and ``do_deprecated_hypercall()`` answer it. Pointers are guest virtual addresses, which
Xen turns into machine addresses through the guest's stage 1 and then stage 2
(``gvirt_to_maddr()``, the AT S12E1 instruction): a bad one is -EFAULT.
"""

from __future__ import annotations

import struct
from typing import Any

from ...hw.arm.mmu import stage1_walk
from ...hw.memory import BusError
from ...isa.bits import M64
from .. import abi, evtchn_op
from ..guestmem import GuestFault
from ..hypercall_table import ARM_HYPERCALLS, SubOps
from ..sched_op import common_sched_op
from . import gnttab_setup, grant
from .grant import ArmContinuation

E = abi.ERRNO


def _s64(v: int) -> int:
    v &= M64
    return v - (1 << 64) if v >> 63 else v


def to_maddr(host, v, va: int, write: bool = False) -> int:
    res = stage1_walk(host.mem, v.cpu.regime(1), va, "w" if write else "r", el=1)
    if not res.ok or res.pa is None:
        raise GuestFault(f"{va:#x} does not translate in d{v.domain.domid} "
                         f"({res.fault.describe() if res.fault else 'no memory'})")
    return res.pa


def copy_from_guest(host, v, va: int, n: int) -> bytes:
    out = bytearray()
    while n > 0:
        chunk = min(n, 4096 - (va & 0xFFF))
        try:
            out += host.mem.read(to_maddr(host, v, va), chunk)
        except BusError:
            raise GuestFault(f"{va:#x} maps no memory") from None
        va, n = va + chunk, n - chunk
    return bytes(out)


def copy_to_guest(host, v, va: int, data: bytes) -> None:
    pos = 0
    while pos < len(data):
        chunk = min(len(data) - pos, 4096 - (va & 0xFFF))
        try:
            host.mem.write(to_maddr(host, v, va, write=True), data[pos:pos + chunk])
        except BusError:
            raise GuestFault(f"{va:#x} maps no memory") from None
        va, pos = va + chunk, pos + chunk


ARM_HYPERCALLS.set_guest_access(copy_from_guest, copy_to_guest)


def dispatch(host, v, nr: int, args: list[int]) -> tuple[int | ArmContinuation, dict[str, Any]]:
    """The result (or a continuation) and what the trace shows of it."""
    info: dict[str, Any] = {}
    dom = v.domain
    table = host.hypercalls
    if nr not in table.numbers:
        return -E["ENOSYS"], info
    if abi.HYPERCALL_BY_NR[nr].control_domain_only and not dom.privileged:
        info["why"] = "control domain only (XSM default policy)"
        return -E["EPERM"], info
    fn = table.get(nr)
    if fn is None:
        return -E["ENOSYS"], info
    try:
        return fn(host, v, args, info), info
    except GuestFault as e:
        info["why"] = str(e)
        return -E["EFAULT"], info


#: Arm's event-channel sub-ops, each with the wire layout of its argument (the same structures
#: as on x86-64: domid_t and evtchn_port_t only, so the same offsets).
ARM_EVTCHN_OPS = SubOps("event_channel_op", abi.EVTCHNOP_LAYOUTS)
# common/event_channel.c's, shared with x86 (lab/xen/evtchn_op.py)
ARM_EVTCHN_OPS.op(abi.EVTCHNOP_close)(evtchn_op.evtchn_close)
ARM_EVTCHN_OPS.op(abi.EVTCHNOP_unmask)(evtchn_op.evtchn_unmask)


def _fields(raw: bytes, lay, *names: str) -> list[int]:
    """The named fields of a structure read from the guest, by its layout."""
    out = []
    for name in names:
        off, width = lay.fields[name]
        out.append(int.from_bytes(raw[off:off + width], "little"))
    return out


@ARM_HYPERCALLS.handler("event_channel_op")
def event_channel_op(host, v, args, info) -> int:
    return ARM_EVTCHN_OPS.call(host, v, args[0], args[1], info, abi.EVTCHNOP_NAMES)


@ARM_EVTCHN_OPS.op(abi.EVTCHNOP_alloc_unbound)
def evtchn_alloc_unbound(host, v, va, info, lay) -> int:
    return evtchn_op.alloc_unbound(host, v, va, lay)[0]


@ARM_EVTCHN_OPS.op(abi.EVTCHNOP_send)
def evtchn_send(host, v, va, info, lay) -> int:
    [port] = _fields(copy_from_guest(host, v, va, lay.size), lay, "port")
    info["args"].append(f"port {port}")
    return host.evtchn.send(v.domain.domid, port)


@ARM_HYPERCALLS.handler("sched_op")
def sched_op(host, v, args, info) -> int:
    cmd, va = args[0], args[1]
    info["args"] = [abi.SCHEDOP_NAMES.get(cmd, str(cmd))]
    if cmd == abi.SCHEDOP_yield:
        host.yield_vcpu(v)
        return 0
    if cmd == abi.SCHEDOP_block:
        host.block_unless_pending(v, "SCHEDOP_block")
        return 0
    res = common_sched_op(host, v, cmd, va, info)
    return -E["ENOSYS"] if res is None else res


@ARM_HYPERCALLS.handler("hvm_op")
def hvm_op(host, v, args, info) -> int:
    """Arm's subset (xen/arch/arm/hvm.c): HVMOP_set_param and HVMOP_get_param only."""
    cmd, va = args[0], args[1]
    info["args"] = [abi.HVMOP_NAMES.get(cmd, str(cmd))]
    if cmd not in (abi.HVMOP_set_param, abi.HVMOP_get_param):
        return -E["ENOSYS"]
    d, index, value = struct.unpack("<HxxIQ", copy_from_guest(host, v, va, 16))
    dom = v.domain if d in (abi.DOMID_SELF, v.domain.domid) else host.domains.get(d)
    if dom is None:
        return -E["ESRCH"]
    if dom is not v.domain and not v.domain.privileged:
        return -E["EPERM"]
    info["args"].append(f"param {index}")
    if index >= 64:                       # HVM_NR_PARAMS
        return -E["EINVAL"]
    if cmd == abi.HVMOP_get_param:
        copy_to_guest(host, v, va + 8, dom.hvm_params.get(index, 0).to_bytes(8, "little"))
        info["args"].append(f"= {dom.hvm_params.get(index, 0):#x}")
        return 0
    if not v.domain.privileged:
        return -E["EPERM"]                # a guest may not move its own rings (xsm_hvm_param)
    dom.hvm_params[index] = value
    return 0


@ARM_HYPERCALLS.handler("grant_table_op")
def grant_table_op(host, v, args, info) -> int | ArmContinuation:
    cmd, va, count = args[0], args[1], args[2]
    info["args"] = [abi.GNTTABOP_NAMES.get(cmd, str(cmd))]
    if cmd == abi.GNTTABOP_query_size and count == 1:
        # struct gnttab_query_size {domid_t dom; uint32_t nr_frames, max_nr_frames; int16_t status}
        frames = len(v.domain.extra.get("gnttab_frames", {}))
        copy_to_guest(host, v, va + 4, struct.pack("<IIh", max(frames, 1), v.domain.max_grant_frames, 0))
        return 0
    if cmd == abi.GNTTABOP_setup_table:
        return gnttab_setup.setup_table(host, v, va, count & 0xFFFFFFFF, info, copy_from_guest, copy_to_guest)
    if cmd in (abi.GNTTABOP_map_grant_ref, abi.GNTTABOP_unmap_grant_ref, abi.GNTTABOP_copy):
        return grant.grant_table_op(host, v, args, info, copy_from_guest, copy_to_guest)
    return -E["ENOSYS"]
