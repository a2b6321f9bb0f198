"""VCPUOP_*: a guest's control of its own vCPUs (xen/common/domain.c, do_vcpu_op): up and down,
their timers, their runstate, and where their vcpu_info lives.
"""

from __future__ import annotations

import struct

from . import abi, timers
from .guestmem import copy_from_guest, copy_to_guest
from .hypercall_table import X86_HYPERCALLS
from .vcpu_info import register as register_vcpu_info

E = abi.ERRNO


@X86_HYPERCALLS.handler("vcpu_op", nargs=3)
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
