"""Hypercalls: numbers from xen/include/public/xen.h; who may call what from the
table in xen/include/hypercall-defs.c (columns pv32 pv64 hvm32 hvm64); privilege from
xen/include/xsm/dummy.h (the default XSM policy); the calling convention from
docs/guest-guide/x86/hypercall-abi.rst.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Values of Hypercall.hvm: may an HVM or PVH guest make the call at all?
HVM_YES = "y"
HVM_NO = "-"
HVM_RESTRICTED = "restricted"          # some sub-ops only (xen/arch/x86/hvm/hypercall.c)
HVM_PIN_UNPIN_ONLY = "pin/unpin only"  # mmuext_op from HVM (xen/arch/x86/mm.c)


@dataclass(frozen=True)
class Hypercall:
    """One row of the hypercall table."""
    nr: int
    name: str                 # __HYPERVISOR_<name>, without the prefix
    pv: bool                  # callable by a PV guest
    hvm: str                  # HVM_YES, HVM_NO, HVM_RESTRICTED or HVM_PIN_UNPIN_ONLY
    control_domain_only: bool  # the default XSM policy lets only the control domain in
    note: str = ""
    arm: str = "-"            # the arm column of hypercall-defs.c ("y", "-", "dep", "subset")


_H = Hypercall
HYPERCALLS: tuple[Hypercall, ...] = (
    _H(0, "set_trap_table", True, HVM_NO, False, "virtual IDT, 256 entries"),
    _H(1, "mmu_update", True, HVM_NO, False, "checked page-table writes (direct paging)"),
    _H(2, "set_gdt", True, HVM_NO, False),
    _H(3, "stack_switch", True, HVM_NO, False),
    _H(4, "set_callbacks", True, HVM_NO, False),
    _H(5, "fpu_taskswitch", True, HVM_NO, False),
    _H(6, "sched_op_compat", True, HVM_NO, False, "compat since 0x00030101", "dep"),
    _H(7, "platform_op", True, HVM_YES, True, "control domain only", "y"),
    _H(8, "set_debugreg", True, HVM_NO, False),
    _H(9, "get_debugreg", True, HVM_NO, False),
    _H(10, "update_descriptor", True, HVM_NO, False),
    _H(12, "memory_op", True, HVM_RESTRICTED, False,
       "HVM: XENMEM_machphys_mapping returns -ENOSYS", "y"),
    _H(13, "multicall", True, HVM_YES, False, "", "y"),
    _H(14, "update_va_mapping", True, HVM_NO, False),
    _H(15, "set_timer_op", True, HVM_YES, False),
    _H(16, "event_channel_op_compat", True, HVM_NO, False, "compat since 0x00030202", "dep"),
    _H(17, "xen_version", True, HVM_YES, False, "", "y"),
    _H(18, "console_io", True, HVM_YES, False,
       "write 0 / read 1; -EPERM unless the caller is the control or console domain "
       "(xen/drivers/char/console.c)", "y"),
    _H(19, "physdev_op_compat", True, HVM_NO, False, "compat since 0x00030202", "dep"),
    _H(20, "grant_table_op", True, HVM_RESTRICTED, False,
       "HVM: only the sub-ops in HVM_ALLOWED_GNTTABOP, others -ENOSYS", "y"),
    _H(21, "vm_assist", True, HVM_YES, False, "", "y"),
    _H(22, "update_va_mapping_otherdomain", True, HVM_NO, False),
    _H(23, "iret", True, HVM_NO, False, "x86 only; the HVM hypercall page has ud2 here"),
    _H(24, "vcpu_op", True, HVM_YES, False, "", "subset"),
    _H(25, "set_segment_base", True, HVM_NO, False,
       "x86-64 PV only: SEGBASE_FS 0, GS_USER 1, GS_KERNEL 2"),
    _H(26, "mmuext_op", True, HVM_PIN_UNPIN_ONLY, False,
       "HVM: pin/unpin only, else -EOPNOTSUPP"),
    _H(27, "xsm_op", True, HVM_YES, False, "", "y"),
    _H(28, "nmi_op", True, HVM_NO, False),
    _H(29, "sched_op", True, HVM_YES, False, "", "y"),
    _H(30, "callback_op", True, HVM_NO, False,
       "types: event 0, failsafe 1, syscall 2, nmi 4, sysenter 5, syscall32 7"),
    _H(31, "xenoprof_op", False, HVM_NO, False, "dropped in Xen 4.22"),
    _H(32, "event_channel_op", True, HVM_YES, False, "", "y"),
    _H(33, "physdev_op", True, HVM_RESTRICTED, False,
       "HVM: only the sub-ops in HVM_ALLOWED_PHYSDEVOP (pci_* and setup_gsi: hardware "
       "domain only)", "subset"),
    _H(34, "hvm_op", True, HVM_YES, False, "", "subset"),
    _H(35, "sysctl", True, HVM_YES, True, "control domain only", "y"),
    _H(36, "domctl", True, HVM_YES, True,
       "control domain only; a few sub-ops also open to the device-model domain", "y"),
    _H(37, "kexec_op", True, HVM_NO, True, "privileged (xsm_kexec, XSM_PRIV)"),
    _H(38, "tmem_op", False, HVM_NO, False, "removed"),
    _H(39, "argo_op", True, HVM_YES, False, "", "y"),
    _H(40, "xenpmu_op", True, HVM_YES, False),
    _H(41, "dm_op", True, HVM_YES, False,
       "needs device-model privilege over the target domain", "subset"),
    _H(42, "hypfs_op", True, HVM_YES, False, "", "y"),
    # arch_0..arch_7 (48-55): x86 gives arch_0 to mca (public/arch-x86/xen-mca.h)
    # and arch_1 to paging_domctl_cont (xen/arch/x86/include/asm/hypercall.h).
    _H(48, "mca", True, HVM_NO, True, "__HYPERVISOR_arch_0; PV only; privileged (xsm_do_mca)"),
    _H(49, "paging_domctl_cont", True, HVM_YES, True,
       "__HYPERVISOR_arch_1; continuation of a paging domctl"),
    _H(50, "arch_2", False, HVM_NO, False, "unused on x86"),
    _H(51, "arch_3", False, HVM_NO, False, "unused on x86"),
    _H(52, "arch_4", False, HVM_NO, False, "unused on x86"),
    _H(53, "arch_5", False, HVM_NO, False, "unused on x86"),
    _H(54, "arch_6", False, HVM_NO, False, "unused on x86"),
    _H(55, "arch_7", False, HVM_NO, False, "unused on x86"),
)
del _H

HYPERCALL_BY_NR: dict[int, Hypercall] = {h.nr: h for h in HYPERCALLS}
HYPERCALL_BY_NAME: dict[str, Hypercall] = {h.name: h for h in HYPERCALLS}
# The generic names of the arch slots x86 has given a name to.
HYPERCALL_BY_NAME["arch_0"] = HYPERCALL_BY_NR[48]
HYPERCALL_BY_NAME["arch_1"] = HYPERCALL_BY_NR[49]

#: Hypercall numbers by name, as public/xen.h spells them (a test checks them
#: against HYPERCALLS).
__HYPERVISOR_set_trap_table = 0
__HYPERVISOR_mmu_update = 1
__HYPERVISOR_set_gdt = 2
__HYPERVISOR_stack_switch = 3
__HYPERVISOR_set_callbacks = 4
__HYPERVISOR_fpu_taskswitch = 5
__HYPERVISOR_sched_op_compat = 6
__HYPERVISOR_platform_op = 7
__HYPERVISOR_set_debugreg = 8
__HYPERVISOR_get_debugreg = 9
__HYPERVISOR_update_descriptor = 10
__HYPERVISOR_memory_op = 12
__HYPERVISOR_multicall = 13
__HYPERVISOR_update_va_mapping = 14
__HYPERVISOR_set_timer_op = 15
__HYPERVISOR_event_channel_op_compat = 16
__HYPERVISOR_xen_version = 17
__HYPERVISOR_console_io = 18
__HYPERVISOR_physdev_op_compat = 19
__HYPERVISOR_grant_table_op = 20
__HYPERVISOR_vm_assist = 21
__HYPERVISOR_update_va_mapping_otherdomain = 22
__HYPERVISOR_iret = 23
__HYPERVISOR_vcpu_op = 24
__HYPERVISOR_set_segment_base = 25
__HYPERVISOR_mmuext_op = 26
__HYPERVISOR_xsm_op = 27
__HYPERVISOR_nmi_op = 28
__HYPERVISOR_sched_op = 29
__HYPERVISOR_callback_op = 30
__HYPERVISOR_xenoprof_op = 31
__HYPERVISOR_event_channel_op = 32
__HYPERVISOR_physdev_op = 33
__HYPERVISOR_hvm_op = 34
__HYPERVISOR_sysctl = 35
__HYPERVISOR_domctl = 36
__HYPERVISOR_kexec_op = 37
__HYPERVISOR_tmem_op = 38
__HYPERVISOR_argo_op = 39
__HYPERVISOR_xenpmu_op = 40
__HYPERVISOR_dm_op = 41
__HYPERVISOR_hypfs_op = 42
__HYPERVISOR_mca = 48
__HYPERVISOR_paging_domctl_cont = 49
__HYPERVISOR_arch_2 = 50
__HYPERVISOR_arch_3 = 51
__HYPERVISOR_arch_4 = 52
__HYPERVISOR_arch_5 = 53
__HYPERVISOR_arch_6 = 54
__HYPERVISOR_arch_7 = 55
__HYPERVISOR_arch_0 = 48
__HYPERVISOR_arch_1 = 49

#: Number of hypercall slots (one 32-byte stub each in the hypercall page).
NR_HYPERCALLS = 64
HYPERCALL_STUB_SIZE = 32


def hypercall_name(nr: int) -> str:
    """Xen's name for hypercall ``nr``; ``unknown_NN`` where nothing is assigned."""
    h = HYPERCALL_BY_NR.get(nr)
    return h.name if h is not None else f"unknown_{nr}"


def hypercall_nr(name: str) -> int:
    """The number of a hypercall by name (KeyError if Xen has no such name)."""
    return HYPERCALL_BY_NAME[name].nr


def hvm_may_call(nr: int) -> bool:
    """May an HVM/PVH guest (at CPL 0) make hypercall ``nr`` at all?

    Restricted calls (memory_op, grant_table_op, physdev_op) and mmuext_op
    (pin/unpin only) count as callable: their sub-op checks come later.
    """
    h = HYPERCALL_BY_NR.get(nr)
    return h is not None and h.hvm != HVM_NO


def pv_may_call(nr: int) -> bool:
    """May a 64-bit PV guest make hypercall ``nr``?"""
    h = HYPERCALL_BY_NR.get(nr)
    return h is not None and h.pv


#: xenalyze prints a few hypercalls under older names in its "PV events"
#: summary (tools/xentrace/xenalyze.c, hypercall_name[]).
XENALYZE_HYPERCALL_NAMES: dict[int, str] = {
    6: "sched_op(compat)", 16: "evtchn_op(compat)", 19: "physdev_op(compat)",
    27: "acm_op", 32: "evtchn_op",
}


def xenalyze_hypercall_name(nr: int) -> str:
    return XENALYZE_HYPERCALL_NAMES.get(nr, hypercall_name(nr))


# Hypercall calling convention (docs/guest-guide/x86/hypercall-abi.rst).
HYPERCALL_ARG_REGS_64 = ("rdi", "rsi", "rdx", "r10", "r8")
HYPERCALL_ARG_REGS_32 = ("ebx", "ecx", "edx", "esi", "edi")
HYPERCALL_VECTOR = 0x82          # int 0x82, 32-bit PV (xen/arch/x86/pv/hypercall.c)
