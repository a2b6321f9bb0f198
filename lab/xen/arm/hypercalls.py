"""Hypercalls on Arm: ``hvc #0xEA1``, the number in x16, arguments in x0-x4, the result in x0.

The numbers, names and errnos are Xen's common ones (``lab/xen/abi.py``); which
of them an Arm guest may make is the ``arm`` column of
``xen/include/hypercall-defs.c``: anything else is -ENOSYS, as
``call_handlers_arm()`` answers it. Pointers are guest virtual addresses, which
Xen turns into machine addresses through the guest's stage 1 and then stage 2
(``gvirt_to_maddr()``, the AT S12E1 instruction): a bad one is -EFAULT.
"""

from __future__ import annotations

import struct
from typing import Any

from ...hw.arm.mmu import stage1_walk
from ...hw.memory import BusError
from ...isa.bits import M64
from .. import abi
from ..guestmem import GuestFault
from . import gnttab_setup, grant
from . import layout as L
from .grant import ArmContinuation

E = abi.ERRNO
#: What an Arm guest may call (hypercall-defs.c's arm column: "y", "dep" or "subset").
ARM_CALLABLE = frozenset(h.nr for h in abi.HYPERCALL_BY_NR.values() if h.arm != "-")


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


def dispatch(host, v, nr: int, args: list[int]) -> tuple[int | ArmContinuation, dict[str, Any]]:
    """The result (or a continuation) and what the trace shows of it."""
    info: dict[str, Any] = {}
    dom = v.domain
    if nr not in abi.HYPERCALL_BY_NR or nr not in ARM_CALLABLE:
        return -E["ENOSYS"], info
    call = abi.HYPERCALL_BY_NR[nr]
    if call.control_domain_only and not dom.privileged:
        info["why"] = "control domain only (XSM default policy)"
        return -E["EPERM"], info
    fn = _HANDLERS.get(call.name)
    if fn is None:
        return -E["ENOSYS"], info
    try:
        return fn(host, v, args, info), info
    except GuestFault as e:
        info["why"] = str(e)
        return -E["EFAULT"], info


def xen_version(host, v, args, info) -> int:
    cmd, va = args[0], args[1]
    from ..release import XEN_VERSION
    info["args"] = [{0: "XENVER_version", 1: "XENVER_extraversion", 3: "XENVER_capabilities"}.get(cmd, cmd)]
    if cmd == 0:
        return (XEN_VERSION[0] << 16) | XEN_VERSION[1]
    if cmd == 1:
        copy_to_guest(host, v, va, XEN_VERSION[2].encode().ljust(16, b"\0"))
        return 0
    if cmd == 3:
        copy_to_guest(host, v, va, L.XEN_CAPS.encode().ljust(1024, b"\0"))
        return 0
    return -E["ENOSYS"]


def console_io(host, v, args, info) -> int:
    cmd, count, va = args[0], args[1] & 0xFFFFFFFF, args[2]
    info["args"] = ["CONSOLEIO_write" if cmd == abi.CONSOLEIO_write else "CONSOLEIO_read", count]
    if not v.domain.privileged:
        return -E["EPERM"]
    if cmd == abi.CONSOLEIO_write:
        host.console_write(v.domain, copy_from_guest(host, v, va, min(count, 4096)).decode("latin-1"))
        return 0
    return -E["ENOSYS"]


def memory_op(host, v, args, info) -> int:
    cmd, va = args[0] & abi.MEMOP_CMD_MASK, args[1]
    dom = v.domain
    info["args"] = [abi.XENMEM_NAMES.get(cmd, str(cmd)) if hasattr(abi, "XENMEM_NAMES") else cmd]
    if cmd == abi.XENMEM_add_to_physmap:
        d, _size, space, idx, gpfn = struct.unpack("<HHIQQ", copy_from_guest(host, v, va, abi.XEN_ADD_TO_PHYSMAP_SIZE))
        info["args"].append(f"{abi.XENMAPSPACE_NAMES.get(space, space)} idx {idx:#x} -> gpfn {gpfn:#x}")
        if d not in (abi.DOMID_SELF, dom.domid):
            info["why"] = "another domain's physmap"
            return -E["EPERM"]
        return host.add_to_physmap(dom, space, idx, gpfn, info)
    if cmd in (abi.XENMEM_current_reservation, abi.XENMEM_maximum_reservation):
        domid = int.from_bytes(copy_from_guest(host, v, va, 2), "little")
        if domid not in (abi.DOMID_SELF, dom.domid):
            if not dom.privileged:
                return -E["EPERM"]
            dom = host.domains.get(domid)
            if dom is None:
                return -E["ESRCH"]
        return dom.mem_pages if cmd == abi.XENMEM_current_reservation else dom.max_pages
    return -E["ENOSYS"]


def event_channel_op(host, v, args, info) -> int:
    cmd, va = args[0], args[1]
    ev = host.evtchn
    dom = v.domain
    info["args"] = [abi.EVTCHNOP_NAMES.get(cmd, str(cmd))]
    if cmd == abi.EVTCHNOP_send:
        port = int.from_bytes(copy_from_guest(host, v, va, 4), "little")
        info["args"].append(f"port {port}")
        return ev.send(dom.domid, port)
    if cmd == abi.EVTCHNOP_alloc_unbound:
        d, remote = struct.unpack("<HH", copy_from_guest(host, v, va, 4))
        if d not in (abi.DOMID_SELF, dom.domid) and not dom.privileged:
            return -E["EPERM"]
        target = dom.domid if d == abi.DOMID_SELF else d
        if target not in host.domains:
            return -E["ESRCH"]
        port = ev.alloc_unbound(target, dom.domid if remote == abi.DOMID_SELF else remote)
        if port < 0:
            return port
        copy_to_guest(host, v, va + 4, port.to_bytes(4, "little"))
        return 0
    if cmd == abi.EVTCHNOP_close:
        return ev.close(dom.domid, int.from_bytes(copy_from_guest(host, v, va, 4), "little"))
    if cmd == abi.EVTCHNOP_unmask:
        port = int.from_bytes(copy_from_guest(host, v, va, 4), "little")
        return host.evtchn_unmask(dom, port)
    return -E["ENOSYS"]


def sched_op(host, v, args, info) -> int:
    cmd, va = args[0], args[1]
    info["args"] = [abi.SCHEDOP_NAMES.get(cmd, str(cmd))]
    if cmd == abi.SCHEDOP_yield:
        host.yield_vcpu(v)
        return 0
    if cmd == abi.SCHEDOP_block:
        host.block_unless_pending(v, "SCHEDOP_block")
        return 0
    if cmd == abi.SCHEDOP_shutdown:
        reason = int.from_bytes(copy_from_guest(host, v, va, 4), "little")
        name = abi.SHUTDOWN_NAMES.get(reason)
        if name is None:
            return -E["EINVAL"]
        info["args"].append(name)
        if name == "crash":
            host.crash(v.domain, "the guest reported a crash (SCHEDOP_shutdown)", v)
        else:
            host.shutdown(v.domain, name)
        return 0
    return -E["ENOSYS"]


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


_HANDLERS = {"xen_version": xen_version, "console_io": console_io, "memory_op": memory_op,
             "event_channel_op": event_channel_op, "sched_op": sched_op, "hvm_op": hvm_op,
             "grant_table_op": grant_table_op}
