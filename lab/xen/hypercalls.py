"""The hypercalls' handlers that have no subsystem module of their own.

Each registers itself in the hypercall table (``lab/xen/hypercall_table.py``),
which checks who may call what and records every call as one trace event.
"""

from __future__ import annotations

import struct

from . import abi
from ..isa.bits import M64
from ..hw.x86 import is_canonical
from .guestmem import GuestFault, copy_from_guest, copy_to_guest, read_u64, write_u64
from .events import enable_event_delivery, local_events_need_delivery
from . import evtchn_op, timers
from .sched_op import common_sched_op
from .domain import CRASHED, DYING, SHUTDOWN
from .hypercall_table import MMU_UPDATE_PREEMPTED, Preempted, SubOps, dispatch, X86_HYPERCALLS, preempt_check

E = abi.ERRNO


# ---------------------------------------------------------------- PV: traps and stacks
@X86_HYPERCALLS.handler("set_trap_table", nargs=1)
def set_trap_table(host, v, args, info) -> int:
    """A virtual IDT: struct trap_info {u8 vector, u8 flags, u16 cs, u64 address}, zero-terminated."""
    dom = v.domain
    va = args[0]
    if va == 0:
        dom.trap_table.clear()
        return 0
    entries = []
    for i in range(256):
        raw = copy_from_guest(host, v, va + i * 16, 16)
        vector, flags, cs, address = struct.unpack("<BBH4xQ", raw)
        if address == 0:
            break
        if not is_canonical(address):
            info["why"] = f"trap {vector} handler {address:#x} is not canonical"
            return -E["EINVAL"]
        dom.trap_table[vector] = (flags, cs, address)
        entries.append(f"{vector}->{address:#x}")
    info["args"] = [f"{va:#x}"] + entries
    return 0


@X86_HYPERCALLS.handler("stack_switch", nargs=2)
def stack_switch(host, v, args, info) -> int:
    v.kernel_ss, v.kernel_sp = args[0] & 0xFFFF, args[1]
    info["args"] = [f"ss={v.kernel_ss:#x}", f"rsp={v.kernel_sp:#x}"]
    return 0


@X86_HYPERCALLS.handler("set_callbacks", nargs=2)
def set_callbacks(host, v, args, info) -> int:
    # do_set_callbacks() registers each and ignores a refusal (a non-canonical address).
    for name, address in (("event", args[0]), ("failsafe", args[1]), ("syscall", args[2])):
        if is_canonical(address):
            v.domain.callbacks[name] = address
            v.domain.callback_flags[name] = 0      # set_callbacks registers with no flags
    return 0


@X86_HYPERCALLS.handler("callback_op", nargs=2)
def callback_op(host, v, args, info) -> int:
    cmd, va = args[0], args[1]
    if cmd not in (0, 1):                      # CALLBACKOP_register 0, unregister 1
        return -E["ENOSYS"]
    raw = copy_from_guest(host, v, va, 16)
    typ, flags, address = struct.unpack("<HH4xQ", raw)
    names = {abi.CALLBACKTYPE_event: "event", abi.CALLBACKTYPE_failsafe: "failsafe",
             abi.CALLBACKTYPE_syscall: "syscall", abi.CALLBACKTYPE_nmi: "nmi",
             abi.CALLBACKTYPE_syscall32: "syscall32", abi.CALLBACKTYPE_sysenter: "sysenter"}
    if typ not in names:
        return -E["EINVAL"]
    if cmd == 0 and not is_canonical(address):
        return -E["EINVAL"]                   # register_guest_callback()
    info["args"] = ["register" if cmd == 0 else "unregister", f"{names[typ]} -> {address:#x}"]
    if cmd == 0:
        v.domain.callbacks[names[typ]] = address
        v.domain.callback_flags[names[typ]] = flags
    else:
        v.domain.callbacks.pop(names[typ], None)
        v.domain.callback_flags.pop(names[typ], None)
    return 0


# ---------------------------------------------------------------- PV: memory
def _pv_only(v) -> int | None:
    return None if v.domain.is_pv else -E["ENOSYS"]


class GuestBatch:
    """The entries of a batched hypercall, read from the guest one at a time as Xen reads them.

    Iterating yields each entry's bytes after charging the work it causes;
    it stops early at an entry that cannot be read (``fault``: -EFAULT) or
    when the vCPU must let others run (``preempted``: how many were read).
    Nothing is copied in advance, so a count near 2^32 costs only the entries
    actually looked at, and every one of them is paid for.
    """

    def __init__(self, host, v, va: int, count: int, size: int, shown: list[str] | None = None) -> None:
        self.host, self.v, self.va, self.count, self.size = host, v, va, count, size
        self.fault: GuestFault | None = None
        self.preempted: int | None = None
        self.read = 0
        self.shown = shown

    def __iter__(self):
        for i in range(self.count):
            if i and preempt_check(self.host, self.v):
                self.preempted = i
                return
            self.host.charge(self.v, "hypercall_batch_entry")
            try:
                raw = copy_from_guest(self.host, self.v, self.va + self.size * i, self.size)
            except GuestFault as e:
                self.fault = e
                return
            self.read = i + 1
            yield raw


def _batch_call(host, v, info, nr_name: str, args, size: int, run) -> int | Preempted:
    """mmu_update / mmuext_op: (va, count, pdone, foreigndom), done entries counted in pdone
    across continuations (MMU_UPDATE_PREEMPTED), stop at the first failure."""
    va, count, done_va, foreigndom = args[0], args[1] & 0xFFFFFFFF, args[2], args[3]
    done = 0
    if count & MMU_UPDATE_PREEMPTED:
        count &= ~MMU_UPDATE_PREEMPTED
        if done_va:
            try:
                done = read_u64(host, v, done_va) & 0xFFFFFFFF
            except GuestFault:
                done = 0
    shown: list[str] = []
    batch = GuestBatch(host, v, va, count, size, shown)
    rc, n = run(batch, foreigndom)
    info["args"] = shown[:4] + ([f"... {count} entries"] if count > 4 else [])
    if rc == 0 and batch.fault is not None:
        rc = -E["EFAULT"]
        info["why"] = str(batch.fault)
    done += n
    if rc == 0 and batch.preempted is not None:
        if done_va:
            write_u64(host, v, done_va, done)
        return Preempted([va + size * n, (count - n) | MMU_UPDATE_PREEMPTED, done_va, foreigndom])
    if done_va:
        write_u64(host, v, done_va, done)
    return rc


@X86_HYPERCALLS.handler("mmu_update", nargs=4)
def mmu_update(host, v, args, info) -> int | Preempted:
    def run(batch: GuestBatch, foreigndom: int):
        def reqs():
            for raw in batch:
                ptr, val = struct.unpack("<QQ", raw)
                batch.shown.append(f"{ptr:#x} <- {val:#x}")
                yield ptr, val
        return host.mm.mmu_update(v, reqs(), foreigndom & 0xFFFF_FFFF)
    return _batch_call(host, v, info, "mmu_update", args, 16, run)


@X86_HYPERCALLS.handler("mmuext_op", nargs=4)
def mmuext_op(host, v, args, info) -> int | Preempted:
    def run(batch: GuestBatch, foreigndom: int):
        def ops():
            for raw in batch:
                cmd, arg1, arg2 = struct.unpack("<I4xQQ", raw)
                batch.shown.append(f"{abi.MMUEXT_NAMES.get(cmd, cmd)}({arg1:#x})")
                yield {"cmd": cmd, "arg1": arg1, "arg2": arg2}
        return host.mm.mmuext_op(v, ops(), foreigndom & 0xFFFF)
    return _batch_call(host, v, info, "mmuext_op", args, 24, run)


@X86_HYPERCALLS.handler("update_va_mapping", nargs=3)
def update_va_mapping(host, v, args, info) -> int:
    va, val, flags = args[0], args[1], args[2]
    info["args"] = [f"{va:#x}", f"{val:#x}", f"flags={flags:#x}"]
    return host.mm.update_va_mapping(v, va, val, flags)


@X86_HYPERCALLS.handler("vm_assist", nargs=2)
def vm_assist(host, v, args, info) -> int:
    cmd, typ = args[0], args[1]
    if typ > 63 or cmd not in (0, 1):
        return -E["EINVAL"]
    if cmd == 0:
        v.domain.vm_assist |= 1 << typ
    else:
        v.domain.vm_assist &= ~(1 << typ)
    return 0


# ---------------------------------------------------------------- scheduling, timers, vCPUs
@X86_HYPERCALLS.handler("sched_op", nargs=2)
def sched_op(host, v, args, info) -> int:
    cmd, arg = args[0], args[1]
    info["args"] = [abi.SCHEDOP_NAMES.get(cmd, str(cmd)), f"{arg:#x}"]
    if cmd == abi.SCHEDOP_yield:
        v.cpu.yield_now = True
        return 0
    if cmd == abi.SCHEDOP_block:
        # vcpu_block_enable_events(): unmask event delivery (local_event_delivery_enable
        # clears vcpu_info's evtchn_upcall_mask), then sleep unless an upcall could be
        # taken now; an HVM/PVH vCPU is woken by its callback interrupt, whatever its IF.
        enable_event_delivery(host, v)
        if not local_events_need_delivery(host, v):
            host.block(v, "SCHEDOP_block")
        return 0
    res = common_sched_op(host, v, cmd, arg, info)
    return -E["ENOSYS"] if res is None else res


@X86_HYPERCALLS.handler("set_timer_op", nargs=1)
def set_timer_op(host, v, args, info) -> int:
    """Arm the vCPU's single-shot timer at an absolute system time (ns); 0 cancels."""
    info["args"] = [f"{args[0]} ns"]
    return timers.do_set_timer_op(host, v, args[0])


@X86_HYPERCALLS.handler("multicall", nargs=2)
def multicall(host, v, args, info) -> int | Preempted | None:
    """struct multicall_entry {u64 op, u64 result, u64 args[6]}: run each, store each result.

    As do_multicall() (common/multicall.c): a call that is preempted has its
    arguments rewritten in its entry and the multicall itself continues from
    that entry."""
    va, count = args[0], args[1] & 0xFFFFFFFF
    info["args"] = [f"{count} calls"]
    batch = GuestBatch(host, v, va, count, 64)
    i = 0
    for raw in batch:
        entry = va + i * 64
        op = int.from_bytes(raw[0:8], "little")
        sub = [int.from_bytes(raw[16 + 8 * k:24 + 8 * k], "little") for k in range(5)]
        res: int | Preempted | None
        if op == abi.hypercall_nr("multicall"):
            res = -E["EINVAL"]
        else:
            res = dispatch(host, v, op, sub)
        if isinstance(res, Preempted):
            copy_to_guest(host, v, entry + 16, b"".join(a.to_bytes(8, "little") for a in res.args[:5]))
            return Preempted([entry, count - i] + list(args[2:]))
        write_u64(host, v, entry + 8, (res or 0) & M64)
        i += 1
        if op == abi.hypercall_nr("iret"):
            return None                    # HYPERVISOR_iret set the vCPU's state: the batch ends there
    if batch.fault is not None:
        info["why"] = str(batch.fault)
        return -E["EFAULT"]
    if batch.preempted is not None:
        return Preempted([va + 64 * i, count - i] + list(args[2:]))
    return 0


# ---------------------------------------------------------------- event channels
EVTCHN_OPS = SubOps("event_channel_op", abi.EVTCHNOP_LAYOUTS)
# common/event_channel.c's sub-ops that Arm answers alike (lab/xen/evtchn_op.py)
EVTCHN_OPS.op(abi.EVTCHNOP_close)(evtchn_op.evtchn_close)
EVTCHN_OPS.op(abi.EVTCHNOP_unmask)(evtchn_op.evtchn_unmask)


@X86_HYPERCALLS.handler("event_channel_op", nargs=2)
def event_channel_op(host, v, args, info) -> int:
    return EVTCHN_OPS.call(host, v, args[0], args[1], info, abi.EVTCHNOP_NAMES)


@EVTCHN_OPS.op(abi.EVTCHNOP_send)
def evtchn_send(host, v, va, info, lay) -> int:
    port = int.from_bytes(copy_from_guest(host, v, va, 4), "little")
    info["args"].append(f"port {port}")
    host.charge(v, "event_channel_send")
    return host.evtchn.send(v.domain.domid, port)


@EVTCHN_OPS.op(abi.EVTCHNOP_alloc_unbound)
def evtchn_alloc_unbound(host, v, va, info, lay) -> int:
    rc, remote, port = evtchn_op.alloc_unbound(host, v, va, lay)
    if rc == 0:
        info["args"].append(f"remote d{remote} -> port {port}")      # x86's trace names the port
    return rc


@EVTCHN_OPS.op(abi.EVTCHNOP_bind_interdomain)
def evtchn_bind_interdomain(host, v, va, info, lay) -> int:
    dom = v.domain
    rdom, rport = struct.unpack("<HxxI", copy_from_guest(host, v, va, 8))
    if rdom == abi.DOMID_SELF:
        rdom = dom.domid
    port = host.evtchn.bind_interdomain(dom.domid, rdom, rport)
    if port < 0:
        return port
    copy_to_guest(host, v, va + lay.at("local_port"), port.to_bytes(4, "little"))
    info["args"].append(f"d{rdom}:{rport} -> port {port}")
    return 0


@EVTCHN_OPS.op(abi.EVTCHNOP_bind_virq)
def evtchn_bind_virq(host, v, va, info, lay) -> int:
    virq, vcpu = struct.unpack("<II", copy_from_guest(host, v, va, 8))
    port = host.evtchn.bind_virq(v.domain.domid, virq, vcpu)
    if port < 0:
        return port
    copy_to_guest(host, v, va + lay.at("port"), port.to_bytes(4, "little"))
    info["args"].append(f"virq {virq} -> port {port}")
    return 0


@EVTCHN_OPS.op(abi.EVTCHNOP_bind_ipi)
def evtchn_bind_ipi(host, v, va, info, lay) -> int:
    vcpu = int.from_bytes(copy_from_guest(host, v, va, 4), "little")
    port = host.evtchn.bind_ipi(v.domain.domid, vcpu)
    if port < 0:
        return port
    copy_to_guest(host, v, va + lay.at("port"), port.to_bytes(4, "little"))
    info["args"].append(f"vcpu {vcpu} -> port {port}")
    return 0


@EVTCHN_OPS.op(abi.EVTCHNOP_status)
def evtchn_status(host, v, va, info, lay) -> int:
    dom = v.domain
    d, port = struct.unpack("<HxxI", copy_from_guest(host, v, va, 8))
    target = dom.domid if d == abi.DOMID_SELF else d
    if target != dom.domid and not dom.privileged:
        return -E["EPERM"]
    code, p = host.evtchn.status(target, port)
    copy_to_guest(host, v, va + lay.at("status"), code.to_bytes(4, "little"))
    return 0


@EVTCHN_OPS.op(abi.EVTCHNOP_reset, abi.EVTCHNOP_reset_cont)
def evtchn_reset(host, v, va, info, lay) -> int:
    # common/event_channel.c: struct evtchn_reset {domid_t dom}; XSM_TARGET, so a domU may
    # reset its own ports only; evtchn_reset() closes every one of them.
    dom = v.domain
    ev = host.evtchn
    d = int.from_bytes(copy_from_guest(host, v, va, 2), "little")
    target = dom if d in (abi.DOMID_SELF, dom.domid) else host.domains.get(d)
    if target is None:
        return -E["ESRCH"]
    info["args"].append(f"d{target.domid}")
    if target is not dom and not dom.privileged:
        info["why"] = "another domain's event channels (XSM_TARGET)"
        return -E["EPERM"]
    for port in sorted(ev.ports.get(target.domid, {})):
        if port:
            ev.close(target.domid, port, quiet=True)
    return 0


# ---------------------------------------------------------------- control domain only
XEN_DOMCTL_NAMES = {1: "createdomain", 2: "destroydomain", 3: "pausedomain", 4: "unpausedomain",
                    5: "getdomaininfo"}


@X86_HYPERCALLS.handler("domctl")
def domctl(host, v, args, info) -> int:
    """struct xen_domctl {u32 cmd; u32 interface_version; u16 domain; ...}; control domain only."""
    cmd, version, domid = struct.unpack("<IIH", copy_from_guest(host, v, args[0], 10))
    info["args"] = [XEN_DOMCTL_NAMES.get(cmd, str(cmd)), f"d{domid}"]
    if version != abi.XEN_DOMCTL_INTERFACE_VERSION:
        # do_domctl(): a caller built against another interface is refused before anything
        info["why"] = f"interface_version {version:#x}, Xen's is {abi.XEN_DOMCTL_INTERFACE_VERSION:#x}"
        return -E["EACCES"]
    target = host.domains.get(domid)
    if cmd in (2, 3, 4, 5) and target is None:
        return -E["ESRCH"]
    if cmd == 2:
        host.destroy(target)
        return 0
    if cmd == 3:
        host.pause(target)
        return 0
    if cmd == 4:
        host.unpause(target)
        return 0
    if cmd == 5:
        copy_to_guest(host, v, args[0] + 16, getdomaininfo(host, target))
        return 0
    return -E["ENOSYS"]


#: The states whose SCHEDOP_shutdown code getdomaininfo reports in flags bits 16-23.
_SHUTDOWN_CODES = {name: code for code, name in abi.SHUTDOWN_NAMES.items()}


def getdomaininfo(host, dom) -> bytes:
    """struct xen_domctl_getdomaininfo as common/domctl.c fills it (public/domctl.h):
    domain, pad, flags (XEN_DOMINF_*), tot/max/outstanding/shr/paged pages, the shared_info
    frame, cpu_time (ns), nr_online_vcpus, max_vcpu_id, ssidref, handle, cpupool, gpaddr_bits."""
    flags = abi.XEN_DOMINF_blocked
    cpu_ns = 0
    online = 0
    for vc in dom.vcpus:
        cpu_ns += vc.run_cycles * 1_000_000_000 // host.cpu_hz
        if vc.runstate == "offline":
            continue
        online += 1
        if vc.runstate != "blocked":
            flags &= ~abi.XEN_DOMINF_blocked
        if vc.runstate == "running":
            flags |= abi.XEN_DOMINF_running
    if dom.state == DYING:
        flags |= abi.XEN_DOMINF_dying
    if dom.is_hvm:
        flags |= abi.XEN_DOMINF_hvm_guest
    if dom.state in (SHUTDOWN, CRASHED):
        # domain_shutdown() pauses the vCPUs (paused_for_shutdown), it does not take them
        # down: they count as online and are neither blocked nor running.
        online = len(dom.vcpus)
        flags &= ~(abi.XEN_DOMINF_blocked | abi.XEN_DOMINF_running)
        code = abi.SHUTDOWN_crash if dom.state == CRASHED else _shutdown_code(dom)
        flags |= abi.XEN_DOMINF_shutdown | (code << abi.XEN_DOMINF_shutdownshift)
    if dom.pause_count:
        flags |= abi.XEN_DOMINF_paused
    if dom.is_hvm and dom.hap:
        flags |= abi.XEN_DOMINF_hap
    shared = dom.shared_info_mfn if dom.is_pv else abi.INVALID_M2P_ENTRY
    max_vcpu = len(dom.vcpus) - 1 if dom.vcpus else 0xFFFF_FFFF       # XEN_INVALID_MAX_VCPU_ID
    return struct.pack("<HHIQQQQQQQIII16sIB7x", dom.domid, 0, flags, dom.mem_pages, dom.max_pages, 0, 0, 0,
                       shared, cpu_ns, online, max_vcpu, 0, bytes(16), 0, 0)


def _shutdown_code(dom) -> int:
    name = dom.shutdown_reason or "poweroff"
    if name.startswith("code "):
        return int(name[5:]) & abi.XEN_DOMINF_shutdownmask
    return _SHUTDOWN_CODES.get(name, abi.SHUTDOWN_poweroff)


@X86_HYPERCALLS.handler("sysctl")
def sysctl(host, v, args, info) -> int:
    return -E["ENOSYS"]


@X86_HYPERCALLS.handler("platform_op")
def platform_op(host, v, args, info) -> int:
    return -E["ENOSYS"]

