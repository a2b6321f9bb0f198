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
from .release import XEN_VERSION
from . import events
from .events import enable_event_delivery, local_events_need_delivery
from .vcpu_info import register as register_vcpu_info
from .console import guest_console_write
from .reservation import reservation_op
from .hvm import add_to_physmap, set_callback_via, set_upcall_vector
from . import hvm_params, timers
from .domain import CRASHED, DYING, SHUTDOWN
from .hypercall_table import MMU_UPDATE_PREEMPTED, Preempted, SubOps, dispatch, handler, preempt_check

E = abi.ERRNO


# ---------------------------------------------------------------- PV: traps and stacks
@handler("set_trap_table", nargs=1)
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


@handler("stack_switch", nargs=2)
def stack_switch(host, v, args, info) -> int:
    v.kernel_ss, v.kernel_sp = args[0] & 0xFFFF, args[1]
    info["args"] = [f"ss={v.kernel_ss:#x}", f"rsp={v.kernel_sp:#x}"]
    return 0


@handler("set_callbacks", nargs=2)
def set_callbacks(host, v, args, info) -> int:
    # do_set_callbacks() registers each and ignores a refusal (a non-canonical address).
    for name, address in (("event", args[0]), ("failsafe", args[1]), ("syscall", args[2])):
        if is_canonical(address):
            v.domain.callbacks[name] = address
            v.domain.callback_flags[name] = 0      # set_callbacks registers with no flags
    return 0


@handler("callback_op", nargs=2)
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


@handler("mmu_update", nargs=4)
def mmu_update(host, v, args, info) -> int | Preempted:
    def run(batch: GuestBatch, foreigndom: int):
        def reqs():
            for raw in batch:
                ptr, val = struct.unpack("<QQ", raw)
                batch.shown.append(f"{ptr:#x} <- {val:#x}")
                yield ptr, val
        return host.mm.mmu_update(v, reqs(), foreigndom & 0xFFFF_FFFF)
    return _batch_call(host, v, info, "mmu_update", args, 16, run)


@handler("mmuext_op", nargs=4)
def mmuext_op(host, v, args, info) -> int | Preempted:
    def run(batch: GuestBatch, foreigndom: int):
        def ops():
            for raw in batch:
                cmd, arg1, arg2 = struct.unpack("<I4xQQ", raw)
                batch.shown.append(f"{abi.MMUEXT_NAMES.get(cmd, cmd)}({arg1:#x})")
                yield {"cmd": cmd, "arg1": arg1, "arg2": arg2}
        return host.mm.mmuext_op(v, ops(), foreigndom & 0xFFFF)
    return _batch_call(host, v, info, "mmuext_op", args, 24, run)


@handler("update_va_mapping", nargs=3)
def update_va_mapping(host, v, args, info) -> int:
    va, val, flags = args[0], args[1], args[2]
    info["args"] = [f"{va:#x}", f"{val:#x}", f"flags={flags:#x}"]
    return host.mm.update_va_mapping(v, va, val, flags)


@handler("vm_assist", nargs=2)
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
@handler("sched_op", nargs=2)
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
    if cmd in (abi.SCHEDOP_shutdown, abi.SCHEDOP_shutdown_code):
        # do_sched_op() passes the reason on as a u8 and refuses none (common/sched/core.c):
        # a code Xen does not name is still the domain's shutdown code.
        reason = int.from_bytes(copy_from_guest(host, v, arg, 4), "little") & 0xFF
        name = abi.SHUTDOWN_NAMES.get(reason, f"code {reason}")
        info["args"] = [abi.SCHEDOP_NAMES.get(cmd), name]
        if cmd == abi.SCHEDOP_shutdown:
            host.shutdown(v.domain, name)
        elif "shutdown_code" not in v.domain.extra:
            v.domain.extra["shutdown_code"] = reason      # the first one set stays
        return 0
    if cmd == abi.SCHEDOP_remote_shutdown and not v.domain.privileged:
        # common/sched/core.c: xsm_schedop_shutdown(XSM_DM_PRIV) refuses a domU
        info["why"] = "another domain's shutdown: the control domain's (XSM default policy)"
        return -E["EPERM"]
    return -E["ENOSYS"]


@handler("set_timer_op", nargs=1)
def set_timer_op(host, v, args, info) -> int:
    """Arm the vCPU's single-shot timer at an absolute system time (ns); 0 cancels."""
    info["args"] = [f"{args[0]} ns"]
    return timers.do_set_timer_op(host, v, args[0])


@handler("vcpu_op", nargs=3)
def vcpu_op(host, v, args, info) -> int:
    cmd, vid, arg = args[0], args[1], args[2]
    dom = v.domain
    info["args"] = [abi.VCPUOP_NAMES.get(cmd, str(cmd)), vid, f"{arg:#x}"]
    if vid >= len(dom.vcpus):
        return -E["ENOENT"]
    target = dom.vcpus[vid]
    if cmd == abi.VCPUOP_is_up:
        return 0 if target.runstate == "offline" else 1
    if cmd in (abi.VCPUOP_set_periodic_timer, abi.VCPUOP_stop_periodic_timer,
               abi.VCPUOP_set_singleshot_timer, abi.VCPUOP_stop_singleshot_timer):
        return timers.vcpu_timer_op(host, v, cmd, target, arg, info)
    if cmd == abi.VCPUOP_get_runstate_info:
        copy_to_guest(host, v, arg, runstate_info(host, target))
        return 0
    if cmd == abi.VCPUOP_down:
        target.runstate = "offline"
        return 0
    if cmd == abi.VCPUOP_up:
        if target.runstate == "offline":
            target.runstate = "runnable"
        return 0
    if cmd == abi.VCPUOP_initialise:
        # arch_initialise_vcpu(): the context is read first (-EFAULT), then a vCPU that was
        # initialised already is -EEXIST; every vCPU of the lab's is, from the domain's build.
        copy_from_guest(host, v, arg, VCPU_GUEST_CONTEXT_SIZE if dom.is_pv else VCPU_HVM_CONTEXT_SIZE)
        info["why"] = f"vCPU {vid} is initialised already"
        return -E["EEXIST"]
    if cmd == abi.VCPUOP_register_vcpu_info:
        return register_vcpu_info(host, v, target, copy_from_guest(host, v, arg, 16), info)
    return -E["ENOSYS"]


#: sizeof(struct vcpu_guest_context) and sizeof(struct vcpu_hvm_context) on x86-64
#: (public/arch-x86/xen.h, public/hvm/hvm_vcpu.h): what VCPUOP_initialise reads.
VCPU_GUEST_CONTEXT_SIZE, VCPU_HVM_CONTEXT_SIZE = 5168, 128


def runstate_info(host, target) -> bytes:
    """struct vcpu_runstate_info (public/vcpu.h): int state, then (8-byte aligned)
    u64 state_entry_time and u64 time[4], all in ns of system time. The lab keeps the
    running time only (run_cycles); time spent runnable, blocked or offline reads 0."""
    state = {"running": abi.RUNSTATE_running, "runnable": abi.RUNSTATE_runnable,
             "blocked": abi.RUNSTATE_blocked, "offline": abi.RUNSTATE_offline}[target.runstate]
    ns = 1_000_000_000

    def to_ns(cycles: int) -> int:
        return cycles * ns // host.cpu_hz
    times = [0, 0, 0, 0]
    times[abi.RUNSTATE_running] = to_ns(target.run_cycles)
    return struct.pack("<i4xQ4Q", state, to_ns(target.last_scheduled), *times)


# ---------------------------------------------------------------- information
@handler("xen_version", nargs=2)
def xen_version(host, v, args, info) -> int:
    cmd, va = args[0], args[1]
    info["args"] = [abi.XENVER_NAMES.get(cmd, str(cmd)) if hasattr(abi, "XENVER_NAMES") else cmd]
    if cmd == abi.XENVER_version:
        return (XEN_VERSION[0] << 16) | XEN_VERSION[1]
    if cmd == abi.XENVER_extraversion:
        copy_to_guest(host, v, va, XEN_VERSION[2].encode().ljust(16, b"\0"))
        return 0
    if cmd == abi.XENVER_capabilities:
        copy_to_guest(host, v, va, b"xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64".ljust(1024, b"\0"))
        return 0
    if cmd == abi.XENVER_pagesize:
        return 4096
    if cmd == abi.XENVER_get_features:
        # xen_feature_info_t {u32 submap_idx; u32 submap}
        idx = int.from_bytes(copy_from_guest(host, v, va, 4), "little")
        info["args"].append(f"submap {idx}")
        if idx >= abi.XENFEAT_NR_SUBMAPS:
            return -E["EINVAL"]
        copy_to_guest(host, v, va + 4, guest_features(v.domain).to_bytes(4, "little"))
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


@handler("console_io", nargs=3)
def console_io(host, v, args, info) -> int:
    """Write to Xen's console. A domU is refused, as a non-debug Xen refuses it."""
    cmd, count, va = args[0], args[1] & 0xFFFFFFFF, args[2]
    info["args"] = ["CONSOLEIO_write" if cmd == abi.CONSOLEIO_write else "CONSOLEIO_read", count]
    if not v.domain.privileged:
        return -E["EPERM"]
    if cmd == abi.CONSOLEIO_write:
        text = copy_from_guest(host, v, va, min(count, 4096)).decode("latin-1")
        guest_console_write(host, v.domain, text)
        return 0
    if cmd == abi.CONSOLEIO_read:
        # do_console_io(): up to ``count`` bytes of what was typed at Xen's console; the count read
        data = bytes(host.console_input[:count])
        del host.console_input[:len(data)]
        copy_to_guest(host, v, va, data)
        return len(data)
    return -E["ENOSYS"]


@handler("memory_op", nargs=2)
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


@handler("multicall", nargs=2)
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


@handler("event_channel_op", nargs=2)
def event_channel_op(host, v, args, info) -> int:
    cmd, va = args[0], args[1]
    name = abi.EVTCHNOP_NAMES.get(cmd, str(cmd))
    info["args"] = [name]
    op = EVTCHN_OPS.get(cmd)
    if op is None:
        return -E["ENOSYS"]
    return op(host, v, va, info, EVTCHN_OPS.layout(cmd))


@EVTCHN_OPS.op(abi.EVTCHNOP_send)
def evtchn_send(host, v, va, info, lay) -> int:
    port = int.from_bytes(copy_from_guest(host, v, va, 4), "little")
    info["args"].append(f"port {port}")
    host.charge(v, "event_channel_send")
    return host.evtchn.send(v.domain.domid, port)


@EVTCHN_OPS.op(abi.EVTCHNOP_alloc_unbound)
def evtchn_alloc_unbound(host, v, va, info, lay) -> int:
    dom = v.domain
    d, remote = struct.unpack("<HH", copy_from_guest(host, v, va, 4))
    if d not in (abi.DOMID_SELF, dom.domid) and not dom.privileged:
        return -E["EPERM"]
    target = dom.domid if d == abi.DOMID_SELF else d
    if target not in host.domains:
        return -E["ESRCH"]
    if remote == abi.DOMID_SELF:
        remote = dom.domid                 # the caller, as evtchn_alloc_unbound() resolves it
    port = host.evtchn.alloc_unbound(target, remote)
    if port < 0:
        return port
    copy_to_guest(host, v, va + lay.at("port"), port.to_bytes(4, "little"))
    info["args"].append(f"remote d{remote} -> port {port}")
    return 0


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


@EVTCHN_OPS.op(abi.EVTCHNOP_close)
def evtchn_close(host, v, va, info, lay) -> int:
    port = int.from_bytes(copy_from_guest(host, v, va, 4), "little")
    return host.evtchn.close(v.domain.domid, port)


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


@EVTCHN_OPS.op(abi.EVTCHNOP_unmask)
def evtchn_unmask(host, v, va, info, lay) -> int:
    port = int.from_bytes(copy_from_guest(host, v, va, 4), "little")
    return events.unmask(host, v.domain, port)


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


# ---------------------------------------------------------------- HVM
@handler("hvm_op", nargs=2)
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
    return -E["ENOSYS"]


# ---------------------------------------------------------------- control domain only
XEN_DOMCTL_NAMES = {1: "createdomain", 2: "destroydomain", 3: "pausedomain", 4: "unpausedomain",
                    5: "getdomaininfo"}


@handler("domctl")
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


@handler("sysctl")
def sysctl(host, v, args, info) -> int:
    return -E["ENOSYS"]


@handler("platform_op")
def platform_op(host, v, args, info) -> int:
    return -E["ENOSYS"]

