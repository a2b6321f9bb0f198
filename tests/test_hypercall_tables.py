"""One hypercall table per architecture, held against the columns of Xen's xen/include/hypercall-defs.c.

Xen generates a table per architecture from that file: a call outside an
architecture's column is -ENOSYS there, and Arm's deprecated ("dep") entries
are -ENOSYS too (do_deprecated_hypercall(), xen/arch/arm/traps.c). The lists
below are those columns, written out from Xen's file; the numbers come from
lab/xen/abi.
"""

from __future__ import annotations

import pytest

from lab.dom0.arm.toolstack import boot_arm_host
from lab.xen import abi
from lab.xen.arm.host import ArmHostConfig, ArmXenHost
from lab.xen.host import XenHost
from lab.xen.hypercall_table import ARM_HYPERCALLS, X86_HYPERCALLS
from test_arm_xen import hypercall, small_guest

#: hypercall-defs.c, the arm column's "do" entries (do, do_arm).
XEN_ARM = {"platform_op", "memory_op", "multicall", "xen_version", "console_io", "grant_table_op", "vm_assist",
           "vcpu_op", "xsm_op", "sched_op", "event_channel_op", "physdev_op", "hvm_op", "sysctl", "domctl",
           "argo_op", "dm_op", "hypfs_op"}
#: hypercall-defs.c, the arm column's "dep" entries: deprecated, -ENOSYS.
XEN_ARM_DEPRECATED = {"sched_op_compat", "event_channel_op_compat", "physdev_op_compat"}
#: hypercall-defs.c, every call with an entry in a pv32, pv64, hvm32 or hvm64 column.
XEN_X86 = {"set_trap_table", "mmu_update", "set_gdt", "stack_switch", "set_callbacks", "fpu_taskswitch",
           "sched_op_compat", "platform_op", "set_debugreg", "get_debugreg", "update_descriptor", "memory_op",
           "multicall", "update_va_mapping", "set_timer_op", "event_channel_op_compat", "xen_version",
           "console_io", "physdev_op_compat", "grant_table_op", "vm_assist", "update_va_mapping_otherdomain",
           "iret", "vcpu_op", "set_segment_base", "mmuext_op", "xsm_op", "nmi_op", "sched_op", "callback_op",
           "event_channel_op", "physdev_op", "hvm_op", "sysctl", "domctl", "kexec_op", "argo_op", "xenpmu_op",
           "dm_op", "hypfs_op", "mca", "paging_domctl_cont"}


def numbers(names: set[str]) -> set[int]:
    return {abi.hypercall_nr(n) for n in names}


def test_each_architectures_table_is_its_column_of_xens():
    assert ARM_HYPERCALLS.numbers == numbers(XEN_ARM)
    assert X86_HYPERCALLS.numbers == numbers(XEN_X86)
    assert not numbers(XEN_ARM_DEPRECATED) & ARM_HYPERCALLS.numbers


def test_each_host_owns_its_architectures_table():
    assert XenHost.hypercalls is X86_HYPERCALLS and ArmXenHost.hypercalls is ARM_HYPERCALLS


def test_the_lab_handles_on_arm_exactly_these_calls_and_none_that_xen_on_arm_lacks():
    assert ARM_HYPERCALLS.names() == ["memory_op", "xen_version", "console_io", "grant_table_op", "sched_op",
                                      "event_channel_op", "hvm_op"]
    for name in ("mmu_update", "set_trap_table", "iret", "set_callbacks", "mmuext_op", "set_timer_op"):
        assert abi.hypercall_nr(name) not in ARM_HYPERCALLS.numbers
        assert abi.hypercall_nr(name) in X86_HYPERCALLS.handlers


def test_every_x86_handler_is_in_x86s_table():
    assert set(X86_HYPERCALLS.handlers) <= X86_HYPERCALLS.numbers
    assert "iret" in X86_HYPERCALLS.names() and "set_trap_table" in X86_HYPERCALLS.names()


def test_a_handler_for_a_call_an_architecture_lacks_is_refused():
    with pytest.raises(ValueError, match="mmu_update is not in arm's table"):
        ARM_HYPERCALLS.handler("mmu_update")(lambda host, v, args, info: 0)
    assert abi.hypercall_nr("mmu_update") not in ARM_HYPERCALLS.handlers


def test_an_arm_guest_gets_enosys_for_a_deprecated_call_and_one_only_x86_has(tmp_path):
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    small_guest(tmp_path, xl, "g", hypercall(6, 0, 0) + "    mov x19, x0\n"          # sched_op_compat: dep
                + hypercall(15, 0) + "    mov x20, x0\n"                               # set_timer_op: x86 only
                + hypercall(29, 0) + "    mov x21, x0\n")                              # sched_op yield: handled
    host.run(300)
    cpu = host.domain_by_name("g").vcpus[0].cpu
    assert cpu.x[19] == cpu.x[20] == (-abi.ERRNO["ENOSYS"]) & (2**64 - 1)
    assert cpu.x[21] == 0
    calls = [(e.data["name"], e.data["errno"]) for e in host.trace.iter_all() if e.kind == "hypercall"]
    assert calls == [("sched_op_compat", "ENOSYS"), ("set_timer_op", "ENOSYS"), ("sched_op", None)]


def test_common_handlers_are_in_both_tables_with_each_architectures_part(tmp_path):
    for name, module in (("xen_version", "lab.xen.version"), ("memory_op", "lab.xen.memory"),
                         ("console_io", "lab.xen.console")):
        nr = abi.hypercall_nr(name)
        assert X86_HYPERCALLS.get(nr) is ARM_HYPERCALLS.get(nr)
        assert X86_HYPERCALLS.get(nr).__module__ == module
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    small_guest(tmp_path, xl, "g", hypercall(17, abi.XENVER_pagesize, 0) + "    mov x19, x0\n"
                + "    movz x1, #0x4010, lsl #16\n" + hypercall(17, abi.XENVER_capabilities) + "    mov x20, x0\n"
                + hypercall(12, abi.XENMEM_maximum_ram_page) + "    mov x21, x0\n"
                + hypercall(12, abi.XENMEM_machphys_mapping) + "    mov x22, x0\n")
    host.run(300)
    dom = host.domain_by_name("g")
    cpu = dom.vcpus[0].cpu
    assert (cpu.x[19], cpu.x[20], cpu.x[21]) == (4096, 0, host.mem.nr_frames - 1)
    assert cpu.x[22] == (-abi.ERRNO["ENOSYS"]) & (2**64 - 1)          # x86's arch_memory_op only
    caps = [e for e in host.trace.iter_all() if e.kind == "hypercall"][1]
    assert caps.data["args"] == ["XENVER_capabilities"]
    text = host.read_guest(dom, 0x40100000, 64).split(b"\0")[0].decode()
    assert text == "xen-3.0-aarch64 xen-3.0-armv7l"



def test_common_sub_ops_are_one_code_in_both_architectures():
    """common/event_channel.c's close and unmask, and do_sched_op()'s shutdowns, are one function each."""
    from lab.xen import evtchn_op, sched_op
    from lab.xen.arm.hypercalls import ARM_EVTCHN_OPS
    from lab.xen.hypercalls import EVTCHN_OPS
    for cmd in (abi.EVTCHNOP_close, abi.EVTCHNOP_unmask):
        assert EVTCHN_OPS.get(cmd) is ARM_EVTCHN_OPS.get(cmd)
        assert EVTCHN_OPS.get(cmd).__module__ == evtchn_op.__name__
    for table in (X86_HYPERCALLS, ARM_HYPERCALLS):
        handler = table.get(abi.hypercall_nr("sched_op"))
        assert sched_op.common_sched_op.__name__ in handler.__code__.co_names
