"""Xen's guest ABI: every number and name the lab shows, spelled as Xen spells it.

Each table names the Xen header it comes from (paths relative to the
xen-project/xen repository). Learners are meant to hold this module against
the real headers: a value here that is not in Xen is a bug. Where the lab adds
a name of its own (an alias, a convenience), the comment says so.

Nothing here does anything; the hypervisor, the toolstack and the panes import
these tables so that they all agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

# ---------------------------------------------------------------------------
# Hypercalls: numbers from xen/include/public/xen.h; who may call what from
# the table in xen/include/hypercall-defs.c (columns pv32 pv64 hvm32 hvm64);
# privilege from xen/include/xsm/dummy.h (the default XSM policy).
# ---------------------------------------------------------------------------

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


def _collect(prefix: str, strip: bool = False, exclude: tuple[str, ...] = ()) -> dict[int, str]:
    """{value: name} of the module's int constants named ``prefix...``, by value."""
    found = [(v, k) for k, v in globals().items()
             if k.startswith(prefix) and isinstance(v, int) and not isinstance(v, bool)
             and k not in exclude]
    found.sort()
    return {v: (k[len(prefix):] if strip else k) for v, k in found}


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

#: Hypercall numbers as module constants, e.g. __HYPERVISOR_mmu_update == 1.
for _h in HYPERCALLS:
    globals()["__HYPERVISOR_" + _h.name] = _h.nr
del _h
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

# ---------------------------------------------------------------------------
# Errno values: xen/include/public/errno.h. Hypercalls return -value.
# ---------------------------------------------------------------------------

ERRNO: dict[str, int] = {
    "EPERM": 1, "ENOENT": 2, "ESRCH": 3, "EINTR": 4, "EIO": 5, "ENXIO": 6, "E2BIG": 7,
    "EBADF": 9, "EAGAIN": 11, "ENOMEM": 12, "EACCES": 13, "EFAULT": 14, "EBUSY": 16,
    "EEXIST": 17, "ENODEV": 19, "EINVAL": 22, "ENOSPC": 28, "EROFS": 30, "ERANGE": 34,
    "EDEADLK": 35, "ENOSYS": 38, "ENOTEMPTY": 39, "ENODATA": 61, "ETIME": 62,
    "EOVERFLOW": 75, "ERESTART": 85, "EMSGSIZE": 90, "EOPNOTSUPP": 95, "ENOBUFS": 105,
    "EISCONN": 106, "ENOTCONN": 107, "ETIMEDOUT": 110,
}
ERRNO_BY_VALUE: dict[int, str] = {v: k for k, v in ERRNO.items()}
globals().update(ERRNO)


def errno_name(value: int) -> str:
    """``EINVAL`` for 22 or -22; ``errno_NN`` for a value errno.h does not define."""
    v = abs(int(value))
    return ERRNO_BY_VALUE.get(v, f"errno_{v}")


# ---------------------------------------------------------------------------
# PV memory management: xen/include/public/xen.h
# ---------------------------------------------------------------------------

# mmu_update: the low two bits of ptr select the command.
MMU_NORMAL_PT_UPDATE = 0
MMU_MACHPHYS_UPDATE = 1
MMU_PT_UPDATE_PRESERVE_AD = 2
MMU_PT_UPDATE_NO_TRANSLATE = 3
MMU_NAMES = {0: "MMU_NORMAL_PT_UPDATE", 1: "MMU_MACHPHYS_UPDATE",
             2: "MMU_PT_UPDATE_PRESERVE_AD", 3: "MMU_PT_UPDATE_NO_TRANSLATE"}

MMUEXT_PIN_L1_TABLE = 0
MMUEXT_PIN_L2_TABLE = 1
MMUEXT_PIN_L3_TABLE = 2
MMUEXT_PIN_L4_TABLE = 3
MMUEXT_UNPIN_TABLE = 4
MMUEXT_NEW_BASEPTR = 5
MMUEXT_TLB_FLUSH_LOCAL = 6
MMUEXT_INVLPG_LOCAL = 7
MMUEXT_TLB_FLUSH_MULTI = 8
MMUEXT_INVLPG_MULTI = 9
MMUEXT_TLB_FLUSH_ALL = 10
MMUEXT_INVLPG_ALL = 11
MMUEXT_FLUSH_CACHE = 12
MMUEXT_SET_LDT = 13
MMUEXT_NEW_USER_BASEPTR = 15
MMUEXT_CLEAR_PAGE = 16
MMUEXT_COPY_PAGE = 17
MMUEXT_FLUSH_CACHE_GLOBAL = 18
MMUEXT_MARK_SUPER = 19
MMUEXT_UNMARK_SUPER = 20
MMUEXT_NAMES: dict[int, str] = _collect("MMUEXT_")
#: The mmuext_op commands an HVM guest may use (xen/arch/x86/mm.c: others -EOPNOTSUPP).
HVM_ALLOWED_MMUEXT = frozenset((MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L2_TABLE, MMUEXT_PIN_L3_TABLE,
                                MMUEXT_PIN_L4_TABLE, MMUEXT_UNPIN_TABLE))

# update_va_mapping flags.
UVMF_NONE = 0
UVMF_TLB_FLUSH = 1
UVMF_INVLPG = 2
UVMF_FLUSHTYPE_MASK = 3
UVMF_MULTI = 0
UVMF_LOCAL = 0
UVMF_ALL = 4

# vm_assist commands and types.
VMASST_CMD_enable = 0
VMASST_CMD_disable = 1
VMASST_TYPE_4gb_segments = 0
VMASST_TYPE_4gb_segments_notify = 1
VMASST_TYPE_writable_pagetables = 2
VMASST_TYPE_pae_extended_cr3 = 3
VMASST_TYPE_architectural_iopl = 4
VMASST_TYPE_runstate_update_flag = 5
VMASST_TYPE_m2p_strict = 32

# Special domain ids.
DOMID_FIRST_RESERVED = 0x7FF0
DOMID_SELF = 0x7FF0
DOMID_IO = 0x7FF1
DOMID_XEN = 0x7FF2
DOMID_COW = 0x7FF3
DOMID_INVALID = 0x7FF4
DOMID_ANY = 0x7FF5
DOMID_IDLE = 0x7FFF
DOMID_MASK = 0x7FFF
DOMID_NAMES = {0x7FF0: "DOMID_SELF", 0x7FF1: "DOMID_IO", 0x7FF2: "DOMID_XEN",
               0x7FF3: "DOMID_COW", 0x7FF4: "DOMID_INVALID", 0x7FF5: "DOMID_ANY",
               0x7FFF: "DOMID_IDLE"}

# Page types (xen/arch/x86/include/asm/mm.h). In Xen each PGT_x macro is the
# type already shifted into type_info bits 61-63 (PG_mask(x, 3)); the lab keeps
# the small type number and shifts with PGT_TYPE_SHIFT where it builds type_info.
PGT_none = 0
PGT_l1_page_table = 1
PGT_l2_page_table = 2
PGT_l3_page_table = 3
PGT_l4_page_table = 4
PGT_seg_desc_page = 5
PGT_shared_page = 6
PGT_writable_page = 7
PGT_TYPE_SHIFT = 61
PGT_type_mask = 7 << PGT_TYPE_SHIFT
PGT_NAMES = {0: "PGT_none", 1: "PGT_l1_page_table", 2: "PGT_l2_page_table",
             3: "PGT_l3_page_table", 4: "PGT_l4_page_table", 5: "PGT_seg_desc_page",
             6: "PGT_shared_page", 7: "PGT_writable_page"}
# Flag bits of type_info (PG_shift(n) = 64 - n).
_PGT_locked = 60
_PGT_pinned = 59
_PGT_validated = 58
_PGT_partial = 56
PGT_locked = 1 << _PGT_locked
PGT_pinned = 1 << _PGT_pinned
PGT_validated = 1 << _PGT_validated
PGT_partial = 1 << _PGT_partial
PGT_count_width = 55
PGT_count_mask = (1 << PGT_count_width) - 1


def pgt_type_info(pgt: int) -> int:
    """The type_info bits of page type ``pgt`` (the value of Xen's PGT_x macro)."""
    return (pgt & 7) << PGT_TYPE_SHIFT


def pgt_of(type_info: int) -> int:
    """The page type held in a type_info word."""
    return (type_info >> PGT_TYPE_SHIFT) & 7


# ---------------------------------------------------------------------------
# Event channels: xen/include/public/event_channel.h, virqs in public/xen.h
# ---------------------------------------------------------------------------

EVTCHNOP_bind_interdomain = 0
EVTCHNOP_bind_virq = 1
EVTCHNOP_bind_pirq = 2
EVTCHNOP_close = 3
EVTCHNOP_send = 4
EVTCHNOP_status = 5
EVTCHNOP_alloc_unbound = 6
EVTCHNOP_bind_ipi = 7
EVTCHNOP_bind_vcpu = 8
EVTCHNOP_unmask = 9
EVTCHNOP_reset = 10
EVTCHNOP_init_control = 11
EVTCHNOP_expand_array = 12
EVTCHNOP_set_priority = 13
EVTCHNOP_reset_cont = 14
EVTCHNOP_NAMES: dict[int, str] = _collect("EVTCHNOP_", strip=True)

EVTCHNSTAT_closed = 0
EVTCHNSTAT_unbound = 1
EVTCHNSTAT_interdomain = 2
EVTCHNSTAT_pirq = 3
EVTCHNSTAT_virq = 4
EVTCHNSTAT_ipi = 5
EVTCHNSTAT_NAMES = {0: "closed", 1: "unbound", 2: "interdomain", 3: "pirq", 4: "virq", 5: "ipi"}

#: 2-level ABI: sizeof(xen_ulong_t)^2 * 64 ports (EVTCHN_2L_NR_CHANNELS).
EVTCHN_2L_NR_CHANNELS_64 = 4096
EVTCHN_2L_NR_CHANNELS_32 = 1024
EVTCHN_FIFO_NR_CHANNELS = 1 << 17
EVTCHN_FIFO_PRIORITY_MAX = 0
EVTCHN_FIFO_PRIORITY_DEFAULT = 7
EVTCHN_FIFO_PRIORITY_MIN = 15

# VIRQs, with the class from xen.h's comments: V per-vCPU, D per-domain, G global.
VIRQ_TIMER = 0
VIRQ_DEBUG = 1
VIRQ_CONSOLE = 2
VIRQ_DOM_EXC = 3
VIRQ_TBUF = 4
VIRQ_DEBUGGER = 6
VIRQ_XENOPROF = 7
VIRQ_CON_RING = 8
VIRQ_PCPU_STATE = 9
VIRQ_MEM_EVENT = 10
VIRQ_ARGO = 11
VIRQ_ENOMEM = 12
VIRQ_XENPMU = 13
VIRQ_ARCH_0 = 16
VIRQ_ARCH_1 = 17
VIRQ_ARCH_2 = 18
VIRQ_ARCH_3 = 19
VIRQ_ARCH_4 = 20
VIRQ_ARCH_5 = 21
VIRQ_ARCH_6 = 22
VIRQ_ARCH_7 = 23
VIRQ_MCA = VIRQ_ARCH_0          # public/arch-x86/xen-mca.h
NR_VIRQS = 24

VIRQ_CLASS: dict[int, str] = {
    VIRQ_TIMER: "V", VIRQ_DEBUG: "V", VIRQ_CONSOLE: "G", VIRQ_DOM_EXC: "G", VIRQ_TBUF: "G",
    VIRQ_DEBUGGER: "G", VIRQ_XENOPROF: "V", VIRQ_CON_RING: "G", VIRQ_PCPU_STATE: "G",
    VIRQ_MEM_EVENT: "G", VIRQ_ARGO: "D", VIRQ_ENOMEM: "G", VIRQ_XENPMU: "V",
    # The arch VIRQs carry no class in xen.h; x86's one user, VIRQ_MCA, is
    # global (xen-mca.h: "G. (DOM0) Machine Check Architecture").
    VIRQ_ARCH_0: "G",
}
VIRQ_NAMES: dict[int, str] = {
    0: "VIRQ_TIMER", 1: "VIRQ_DEBUG", 2: "VIRQ_CONSOLE", 3: "VIRQ_DOM_EXC", 4: "VIRQ_TBUF",
    6: "VIRQ_DEBUGGER", 7: "VIRQ_XENOPROF", 8: "VIRQ_CON_RING", 9: "VIRQ_PCPU_STATE",
    10: "VIRQ_MEM_EVENT", 11: "VIRQ_ARGO", 12: "VIRQ_ENOMEM", 13: "VIRQ_XENPMU",
    **{16 + i: f"VIRQ_ARCH_{i}" for i in range(8)},
}


def virq_is_per_vcpu(virq: int) -> bool:
    return VIRQ_CLASS.get(virq) == "V"


# ---------------------------------------------------------------------------
# Grant tables: xen/include/public/grant_table.h
# ---------------------------------------------------------------------------

GNTTABOP_map_grant_ref = 0
GNTTABOP_unmap_grant_ref = 1
GNTTABOP_setup_table = 2
GNTTABOP_dump_table = 3
GNTTABOP_transfer = 4
GNTTABOP_copy = 5
GNTTABOP_query_size = 6
GNTTABOP_unmap_and_replace = 7
GNTTABOP_set_version = 8
GNTTABOP_get_status_frames = 9
GNTTABOP_get_version = 10
GNTTABOP_swap_grant_ref = 11
GNTTABOP_cache_flush = 12
GNTTABOP_NAMES: dict[int, str] = _collect("GNTTABOP_", strip=True)

#: grant_table_op sub-ops an HVM guest may use; the rest return -ENOSYS
#: (xen/arch/x86/hvm/hypercall.c, hvm_grant_table_op).
HVM_ALLOWED_GNTTABOP = frozenset((
    GNTTABOP_query_size, GNTTABOP_setup_table, GNTTABOP_set_version, GNTTABOP_get_version,
    GNTTABOP_copy, GNTTABOP_map_grant_ref, GNTTABOP_unmap_grant_ref, GNTTABOP_swap_grant_ref,
))

# Grant entry flags.
GTF_invalid = 0
GTF_permit_access = 1
GTF_accept_transfer = 2
GTF_transitive = 3
GTF_type_mask = 3
GTF_readonly = 1 << 2
GTF_reading = 1 << 3
GTF_writing = 1 << 4
GTF_PWT = 1 << 5
GTF_PCD = 1 << 6
GTF_PAT = 1 << 7
GTF_sub_page = 1 << 8
GTF_transfer_committed = 1 << 2
GTF_transfer_completed = 1 << 3

# Mapping flags.
GNTMAP_device_map = 1 << 0
GNTMAP_host_map = 1 << 1
GNTMAP_readonly = 1 << 2
GNTMAP_application_map = 1 << 3
GNTMAP_contains_pte = 1 << 4

# Per-op status codes.
GNTST_okay = 0
GNTST_general_error = -1
GNTST_bad_domain = -2
GNTST_bad_gntref = -3
GNTST_bad_handle = -4
GNTST_bad_virt_addr = -5
GNTST_bad_dev_addr = -6
GNTST_no_device_space = -7
GNTST_permission_denied = -8
GNTST_bad_page = -9
GNTST_bad_copy_arg = -10
GNTST_address_too_big = -11
GNTST_eagain = -12
GNTST_no_space = -13
GNTST_NAMES: dict[int, str] = _collect("GNTST_")
#: GNTTABOP_error_msgs, indexed by -status.
GNTTABOP_ERROR_MSGS: tuple[str, ...] = (
    "okay", "undefined error", "unrecognised domain id", "invalid grant reference",
    "invalid mapping handle", "invalid virtual address", "invalid device address",
    "no spare translation slot in the I/O MMU", "permission denied", "bad page",
    "copy arguments cross page boundary", "page address size too large",
    "operation not done; try again", "out of space",
)


def gntst_name(status: int) -> str:
    """``GNTST_bad_gntref`` for -3; ``GNTST_unknown_N`` otherwise."""
    return GNTST_NAMES.get(status, f"GNTST_unknown_{status}")


def gntst_message(status: int) -> str:
    if -len(GNTTABOP_ERROR_MSGS) < status <= 0:
        return GNTTABOP_ERROR_MSGS[-status]
    return "bad status"


GRANT_ENTRY_V1_SIZE = 8                      # u16 flags; u16 domid; u32 frame
GRANT_ENTRIES_V1_PER_PAGE = 4096 // GRANT_ENTRY_V1_SIZE
GNTTAB_NR_RESERVED_ENTRIES = 8
GNTTAB_RESERVED_CONSOLE = 0
GNTTAB_RESERVED_XENSTORE = 1
#: The first grant reference a guest may hand out (lab name; = GNTTAB_NR_RESERVED_ENTRIES).
GNTTAB_FIRST_FREE_REF = GNTTAB_NR_RESERVED_ENTRIES

# ---------------------------------------------------------------------------
# Shared rings: public/io/ring.h, public/io/blkif.h, public/io/netif.h
# ---------------------------------------------------------------------------

PAGE_SIZE = 4096
#: req_prod, req_event, rsp_prod, rsp_event (u32 each), padded to 64 bytes.
RING_HEADER_SIZE = 64


def ring_size(entry_size: int, pages: int = 1) -> int:
    """__RING_SIZE: entries that fit after the header, rounded down to a power of 2."""
    n = (pages * PAGE_SIZE - RING_HEADER_SIZE) // entry_size
    if n <= 0:
        return 0
    return 1 << (n.bit_length() - 1)


BLKIF_OP_READ = 0
BLKIF_OP_WRITE = 1
BLKIF_OP_WRITE_BARRIER = 2
BLKIF_OP_FLUSH_DISKCACHE = 3
BLKIF_OP_RESERVED_1 = 4
BLKIF_OP_DISCARD = 5
BLKIF_OP_INDIRECT = 6
BLKIF_OP_NAMES = {0: "BLKIF_OP_READ", 1: "BLKIF_OP_WRITE", 2: "BLKIF_OP_WRITE_BARRIER",
                  3: "BLKIF_OP_FLUSH_DISKCACHE", 4: "BLKIF_OP_RESERVED_1",
                  5: "BLKIF_OP_DISCARD", 6: "BLKIF_OP_INDIRECT"}
BLKIF_MAX_SEGMENTS_PER_REQUEST = 11
BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST = 8
BLKIF_RSP_EOPNOTSUPP = -2
BLKIF_RSP_ERROR = -1
BLKIF_RSP_OKAY = 0
BLKIF_REQUEST_SIZE = 112      # the ring entry (request/response union), x86-64
BLKIF_RING_SIZE = ring_size(BLKIF_REQUEST_SIZE)   # 32 for one page
BLKIF_SECTOR_SIZE = 512
VDISK_CDROM = 0x1
VDISK_REMOVABLE = 0x2
VDISK_READONLY = 0x4

_NETTXF_csum_blank = 0
_NETTXF_data_validated = 1
_NETTXF_more_data = 2
_NETTXF_extra_info = 3
NETTXF_csum_blank = 1 << _NETTXF_csum_blank
NETTXF_data_validated = 1 << _NETTXF_data_validated
NETTXF_more_data = 1 << _NETTXF_more_data
NETTXF_extra_info = 1 << _NETTXF_extra_info
_NETRXF_data_validated = 0
_NETRXF_csum_blank = 1
_NETRXF_more_data = 2
_NETRXF_extra_info = 3
_NETRXF_gso_prefix = 4
NETRXF_data_validated = 1 << _NETRXF_data_validated
NETRXF_csum_blank = 1 << _NETRXF_csum_blank
NETRXF_more_data = 1 << _NETRXF_more_data
NETRXF_extra_info = 1 << _NETRXF_extra_info
NETRXF_gso_prefix = 1 << _NETRXF_gso_prefix
NETIF_RSP_DROPPED = -2
NETIF_RSP_ERROR = -1
NETIF_RSP_OKAY = 0
NETIF_RSP_NULL = 1
XEN_NETIF_NR_SLOTS_MIN = 18
XEN_NETIF_MAX_TX_SIZE = 0xFFFF
NETIF_TX_ENTRY_SIZE = 12      # union of netif_tx_request (12) and netif_tx_response (4)
NETIF_RX_ENTRY_SIZE = 8       # union of netif_rx_request (8) and netif_rx_response (8)
XEN_NETIF_TX_RING_SIZE = ring_size(NETIF_TX_ENTRY_SIZE)   # 256
XEN_NETIF_RX_RING_SIZE = ring_size(NETIF_RX_ENTRY_SIZE)   # 256

# ---------------------------------------------------------------------------
# XenStore wire protocol: public/io/xs_wire.h; XenBus states: public/io/xenbus.h
# ---------------------------------------------------------------------------

XS_CONTROL = 0
XS_DEBUG = XS_CONTROL
XS_DIRECTORY = 1
XS_READ = 2
XS_GET_PERMS = 3
XS_WATCH = 4
XS_UNWATCH = 5
XS_TRANSACTION_START = 6
XS_TRANSACTION_END = 7
XS_INTRODUCE = 8
XS_RELEASE = 9
XS_GET_DOMAIN_PATH = 10
XS_WRITE = 11
XS_MKDIR = 12
XS_RM = 13
XS_SET_PERMS = 14
XS_WATCH_EVENT = 15
XS_ERROR = 16
XS_IS_DOMAIN_INTRODUCED = 17
XS_RESUME = 18
XS_SET_TARGET = 19
# 20 was XS_RESTRICT, removed; the enum skips it.
XS_RESET_WATCHES = 21
XS_DIRECTORY_PART = 22
XS_GET_FEATURE = 23
XS_SET_FEATURE = 24
XS_GET_QUOTA = 25
XS_SET_QUOTA = 26
XS_TYPE_COUNT = 27
XS_INVALID = 0xFFFF
XS_NAMES: dict[int, str] = _collect("XS_", exclude=("XS_DEBUG", "XS_TYPE_COUNT", "XS_INVALID"))
XS_BY_NAME: dict[str, int] = {v: k for k, v in XS_NAMES.items()}
XS_WATCH_PATH = 0
XS_WATCH_TOKEN = 1
XS_HEADER_SIZE = 16                  # u32 type, req_id, tx_id, len
XENSTORE_RING_SIZE = 1024
XENSTORE_PAYLOAD_MAX = 4096
XENSTORE_ABS_PATH_MAX = 3072
XENSTORE_REL_PATH_MAX = 2048


class XenbusState(IntEnum):
    """enum xenbus_state, with Xen's member names."""
    XenbusStateUnknown = 0
    XenbusStateInitialising = 1
    XenbusStateInitWait = 2
    XenbusStateInitialised = 3
    XenbusStateConnected = 4
    XenbusStateClosing = 5
    XenbusStateClosed = 6
    XenbusStateReconfiguring = 7
    XenbusStateReconfigured = 8

    @property
    def short(self) -> str:
        """``Connected`` for XenbusStateConnected."""
        return self.name[len("XenbusState"):]


globals().update({m.name: m for m in XenbusState})

# ---------------------------------------------------------------------------
# HVM: public/hvm/params.h, public/hvm/hvm_op.h
# ---------------------------------------------------------------------------

HVM_PARAM_CALLBACK_IRQ = 0
HVM_PARAM_STORE_PFN = 1
HVM_PARAM_STORE_EVTCHN = 2
HVM_PARAM_PAE_ENABLED = 4
HVM_PARAM_IOREQ_PFN = 5
HVM_PARAM_BUFIOREQ_PFN = 6
HVM_PARAM_VIRIDIAN = 9
HVM_PARAM_TIMER_MODE = 10
HVM_PARAM_HPET_ENABLED = 11
HVM_PARAM_IDENT_PT = 12
HVM_PARAM_DM_DOMAIN = 13
HVM_PARAM_ACPI_S_STATE = 14
HVM_PARAM_VM86_TSS = 15
HVM_PARAM_VPT_ALIGN = 16
HVM_PARAM_CONSOLE_PFN = 17
HVM_PARAM_CONSOLE_EVTCHN = 18
HVM_PARAM_ACPI_IOPORTS_LOCATION = 19
HVM_PARAM_NESTEDHVM = 24
HVM_PARAM_BUFIOREQ_EVTCHN = 26
HVM_PARAM_PAGING_RING_PFN = 27
HVM_PARAM_MONITOR_RING_PFN = 28
HVM_PARAM_SHARING_RING_PFN = 29
HVM_PARAM_TRIPLE_FAULT_REASON = 31
HVM_PARAM_IOREQ_SERVER_PFN = 32
HVM_PARAM_NR_IOREQ_SERVER_PAGES = 33
HVM_PARAM_VM_GENERATION_ID_ADDR = 34
HVM_PARAM_ALTP2M = 35
HVM_PARAM_X87_FIP_WIDTH = 36
HVM_PARAM_VM86_TSS_SIZED = 37
HVM_PARAM_MCA_CAP = 38
HVM_PARAM_NAMES: dict[int, str] = _collect("HVM_PARAM_")
# HVM_PARAM_CALLBACK_IRQ: val[63:56] is the delivery type.
HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT = 56
HVM_PARAM_CALLBACK_IRQ_TYPE_MASK = 0xFF << 56
HVM_PARAM_CALLBACK_TYPE_GSI = 0
HVM_PARAM_CALLBACK_TYPE_PCI_INTX = 1
HVM_PARAM_CALLBACK_TYPE_VECTOR = 2   # x86 (PPI on Arm)
#: The vector Linux uses for the event-channel upcall (Linux: irq_vectors.h).
LINUX_HYPERVISOR_CALLBACK_VECTOR = 0xF3

HVMOP_set_param = 0
HVMOP_get_param = 1
HVMOP_set_pci_intx_level = 2
HVMOP_set_isa_irq_level = 3
HVMOP_set_pci_link_route = 4
HVMOP_flush_tlbs = 5
HVMOP_pagetable_dying = 9
HVMOP_get_time = 10
HVMOP_xentrace = 11
HVMOP_set_mem_access = 12
HVMOP_get_mem_access = 13
HVMOP_get_mem_type = 15
HVMOP_set_evtchn_upcall_vector = 23
HVMOP_guest_request_vm_event = 24
HVMOP_altp2m = 25
HVMOP_NAMES: dict[int, str] = _collect("HVMOP_")
#: struct xen_hvm_evtchn_upcall_vector {u32 vcpu; u8 vector}; vectors below 0x10 are refused.
HVM_UPCALL_VECTOR_MIN = 0x10
#: The vector Linux gives HVM_PARAM_CALLBACK_IRQ (HYPERVISOR_CALLBACK_VECTOR, irq_vectors.h).
HYPERVISOR_CALLBACK_VECTOR = 0xF3
#: x2APIC end-of-interrupt register (MSR 0x800 + APIC_EOI 0xB0 >> 4); IA32_APIC_BASE.EXTD.
MSR_X2APIC_EOI = 0x80B
APIC_BASE_EXTD = 1 << 10

# physdev_op sub-ops (public/physdev.h) and what HVM may use.
PHYSDEVOP_irq_status_query = 5
PHYSDEVOP_set_iopl = 6
PHYSDEVOP_set_iobitmap = 7
PHYSDEVOP_apic_read = 8
PHYSDEVOP_apic_write = 9
PHYSDEVOP_alloc_irq_vector = 10
PHYSDEVOP_free_irq_vector = 11
PHYSDEVOP_eoi = 12
PHYSDEVOP_map_pirq = 13
PHYSDEVOP_unmap_pirq = 14
PHYSDEVOP_manage_pci_add = 15
PHYSDEVOP_manage_pci_remove = 16
PHYSDEVOP_pirq_eoi_gmfn_v1 = 17
PHYSDEVOP_restore_msi = 19
PHYSDEVOP_manage_pci_add_ext = 20
PHYSDEVOP_setup_gsi = 21
PHYSDEVOP_get_free_pirq = 23
PHYSDEVOP_pci_mmcfg_reserved = 24
PHYSDEVOP_pci_device_add = 25
PHYSDEVOP_pci_device_remove = 26
PHYSDEVOP_restore_msi_ext = 27
PHYSDEVOP_pirq_eoi_gmfn_v2 = 28
PHYSDEVOP_dbgp_op = 29
PHYSDEVOP_prepare_msix = 30
PHYSDEVOP_release_msix = 31
PHYSDEVOP_pci_device_reset = 32
#: physdev_op sub-ops open to HVM guests (xen/arch/x86/hvm/hypercall.c,
#: hvm_physdev_op); eoi, irq_status_query and get_free_pirq need pirq support.
HVM_ALLOWED_PHYSDEVOP = frozenset((
    PHYSDEVOP_map_pirq, PHYSDEVOP_unmap_pirq, PHYSDEVOP_eoi, PHYSDEVOP_irq_status_query,
    PHYSDEVOP_get_free_pirq,
))
HVM_PIRQ_ONLY_PHYSDEVOP = frozenset((PHYSDEVOP_eoi, PHYSDEVOP_irq_status_query,
                                     PHYSDEVOP_get_free_pirq))
#: ... and those open only to the hardware domain when it is HVM/PVH.
HVM_HWDOM_PHYSDEVOP = frozenset((
    PHYSDEVOP_setup_gsi, PHYSDEVOP_pci_mmcfg_reserved, PHYSDEVOP_pci_device_add,
    PHYSDEVOP_pci_device_remove, PHYSDEVOP_pci_device_reset, PHYSDEVOP_dbgp_op,
))

# ---------------------------------------------------------------------------
# sched_op (public/sched.h), callbacks (public/callback.h), console_io and
# vm_assist (public/xen.h), vcpu_op (public/vcpu.h), memory_op
# (public/memory.h), xen_version (public/version.h), features
# (public/features.h). All checked against the headers at the baseline commit.
# ---------------------------------------------------------------------------

SCHEDOP_yield = 0
SCHEDOP_block = 1
SCHEDOP_shutdown = 2
SCHEDOP_poll = 3
SCHEDOP_remote_shutdown = 4
SCHEDOP_shutdown_code = 5
SCHEDOP_watchdog = 6
SCHEDOP_pin_override = 7
SCHEDOP_NAMES: dict[int, str] = _collect("SCHEDOP_")

#: XEN_DOMCTL_INTERFACE_VERSION of Xen master (public/domctl.h); do_domctl() refuses any other
#: with -EACCES.
XEN_DOMCTL_INTERFACE_VERSION = 0x18
# getdomaininfo's flags (public/domctl.h)
XEN_DOMINF_dying = 1 << 0
XEN_DOMINF_hvm_guest = 1 << 1
XEN_DOMINF_shutdown = 1 << 2
XEN_DOMINF_paused = 1 << 3
XEN_DOMINF_blocked = 1 << 4
XEN_DOMINF_running = 1 << 5
XEN_DOMINF_debugged = 1 << 6
XEN_DOMINF_xs_domain = 1 << 7
XEN_DOMINF_hap = 1 << 8
XEN_DOMINF_shutdownmask = 255
XEN_DOMINF_shutdownshift = 16

SHUTDOWN_poweroff = 0
SHUTDOWN_reboot = 1
SHUTDOWN_suspend = 2
SHUTDOWN_crash = 3
SHUTDOWN_watchdog = 4
SHUTDOWN_soft_reset = 5
SHUTDOWN_MAX = 5
SHUTDOWN_NAMES = {0: "poweroff", 1: "reboot", 2: "suspend", 3: "crash", 4: "watchdog",
                  5: "soft_reset"}

CALLBACKTYPE_event = 0
CALLBACKTYPE_failsafe = 1
CALLBACKTYPE_syscall = 2
CALLBACKTYPE_sysenter_deprecated = 3
CALLBACKTYPE_nmi = 4
CALLBACKTYPE_sysenter = 5
CALLBACKTYPE_syscall32 = 7
CALLBACKOP_register = 0
CALLBACKOP_unregister = 1
CALLBACKF_mask_events = 1 << 0

CONSOLEIO_write = 0
CONSOLEIO_read = 1

SEGBASE_FS = 0
SEGBASE_GS_USER = 1
SEGBASE_GS_KERNEL = 2
SEGBASE_GS_USER_SEL = 3

VCPUOP_initialise = 0
VCPUOP_up = 1
VCPUOP_down = 2
VCPUOP_is_up = 3
VCPUOP_get_runstate_info = 4
VCPUOP_register_runstate_memory_area = 5
VCPUOP_set_periodic_timer = 6
VCPUOP_stop_periodic_timer = 7
VCPUOP_set_singleshot_timer = 8
VCPUOP_stop_singleshot_timer = 9
VCPUOP_register_vcpu_info = 10
VCPUOP_send_nmi = 11
VCPUOP_get_physid = 12
VCPUOP_register_vcpu_time_memory_area = 13
VCPUOP_register_runstate_phys_area = 14
VCPUOP_register_vcpu_time_phys_area = 15
VCPUOP_NAMES: dict[int, str] = _collect("VCPUOP_")
#: struct vcpu_set_singleshot_timer flags: fail with -ETIME if the timeout is already past.
VCPU_SSHOTTMR_future = 1

RUNSTATE_running = 0
RUNSTATE_runnable = 1
RUNSTATE_blocked = 2
RUNSTATE_offline = 3
RUNSTATE_NAMES = {0: "running", 1: "runnable", 2: "blocked", 3: "offline"}

XENMEM_increase_reservation = 0
XENMEM_decrease_reservation = 1
XENMEM_maximum_ram_page = 2
XENMEM_current_reservation = 3
XENMEM_maximum_reservation = 4
XENMEM_machphys_mfn_list = 5
XENMEM_populate_physmap = 6
XENMEM_add_to_physmap = 7
XENMEM_memory_map = 9
XENMEM_machine_memory_map = 10
XENMEM_exchange = 11
XENMEM_machphys_mapping = 12
XENMEM_set_memory_map = 13
XENMEM_maximum_gpfn = 14
XENMEM_remove_from_physmap = 15
XENMEM_set_pod_target = 16
XENMEM_get_pod_target = 17
XENMEM_add_to_physmap_batch = 23
XENMEM_claim_pages = 24
XENMEM_machphys_compat_mfn_list = 25
XENMEM_get_vnumainfo = 26
XENMEM_reserved_device_memory_map = 27
XENMEM_acquire_resource = 28
XENMEM_NAMES: dict[int, str] = _collect("XENMEM_")
#: memory_op sub-ops an HVM guest may not use (-ENOSYS; hvm_memory_op).
HVM_DENIED_XENMEM = frozenset((XENMEM_machphys_mapping,))
#: The low bits of memory_op's cmd hold the sub-op; the rest is the
#: continuation's start extent (xen/include/xen/hypercall.h).
MEMOP_EXTENT_SHIFT = 6
MEMOP_CMD_MASK = (1 << MEMOP_EXTENT_SHIFT) - 1
# XENMEM_add_to_physmap spaces.
XENMAPSPACE_shared_info = 0
XENMAPSPACE_grant_table = 1
XENMAPSPACE_gmfn = 2
XENMAPSPACE_gmfn_range = 3
XENMAPSPACE_gmfn_foreign = 4
XENMAPSPACE_dev_mmio = 5
XENMAPSPACE_NAMES: dict[int, str] = _collect("XENMAPSPACE_")
#: idx bit of XENMAPSPACE_grant_table asking for a v2 status frame.
XENMAPIDX_grant_table_status = 0x80000000
#: struct xen_add_to_physmap {domid_t domid; u16 size; u32 space; xen_ulong_t idx; xen_pfn_t gpfn}.
XEN_ADD_TO_PHYSMAP_SIZE = 24
#: What mfn_to_gfn() gives for a frame mapped at no gfn (INVALID_M2P_ENTRY, ~0UL).
INVALID_M2P_ENTRY = 0xFFFF_FFFF_FFFF_FFFF

XENVER_version = 0
XENVER_extraversion = 1
XENVER_compile_info = 2
XENVER_capabilities = 3
XENVER_changeset = 4
XENVER_platform_parameters = 5
XENVER_get_features = 6
XENVER_pagesize = 7
XENVER_guest_handle = 8
XENVER_commandline = 9
XENVER_build_id = 10
XENVER_NAMES: dict[int, str] = _collect("XENVER_")

XENFEAT_writable_page_tables = 0
XENFEAT_writable_descriptor_tables = 1
XENFEAT_auto_translated_physmap = 2
XENFEAT_supervisor_mode_kernel = 3
XENFEAT_pae_pgdir_above_4gb = 4
XENFEAT_mmu_pt_update_preserve_ad = 5
XENFEAT_highmem_assist = 6
XENFEAT_gnttab_map_avail_bits = 7
XENFEAT_hvm_callback_vector = 8
XENFEAT_hvm_safe_pvclock = 9
XENFEAT_hvm_pirqs = 10
XENFEAT_dom0 = 11
XENFEAT_grant_map_identity = 12
XENFEAT_memory_op_vnode_supported = 13
XENFEAT_ARM_SMCCC_supported = 14
XENFEAT_linux_rsdp_unrestricted = 15
XENFEAT_not_direct_mapped = 16
XENFEAT_direct_mapped = 17
XENFEAT_runstate_phys_area = 18
XENFEAT_vcpu_time_phys_area = 19
XENFEAT_dm_msix_all_writes = 20
#: Sub-maps of 32 feature bits there are (XENFEAT_NR_SUBMAPS): only index 0.
XENFEAT_NR_SUBMAPS = 1
XENFEAT_NAMES: dict[int, str] = _collect("XENFEAT_")

# ELF notes a guest kernel carries (public/elfnote.h) and the PVH start info
# (public/arch-x86/hvm/start_info.h).
XEN_ELFNOTE_ENTRY = 1
XEN_ELFNOTE_HYPERCALL_PAGE = 2
XEN_ELFNOTE_VIRT_BASE = 3
XEN_ELFNOTE_GUEST_OS = 6
XEN_ELFNOTE_FEATURES = 10
XEN_ELFNOTE_PHYS32_ENTRY = 18
XEN_HVM_START_MAGIC_VALUE = 0x336EC578

# Xen platform PCI device (docs/man/xen-pci-device-reservations.7.pod).
XEN_PLATFORM_VENDOR_ID = 0x5853
XEN_PLATFORM_DEVICE_ID = 0x0001

# ---------------------------------------------------------------------------
# VM exits. VMX: xen/arch/x86/include/asm/hvm/vmx/vmx.h (EXIT_REASON_<name>);
# the names are the ones xenalyze prints. SVM: xen/arch/x86/hvm/svm/vmcb.h
# (VMEXIT_<name>).
# ---------------------------------------------------------------------------

VMX_EXIT_REASONS: dict[int, str] = {
    0: "EXCEPTION_NMI", 1: "EXTERNAL_INTERRUPT", 2: "TRIPLE_FAULT", 3: "INIT", 4: "SIPI",
    5: "IO_SMI", 6: "OTHER_SMI", 7: "PENDING_VIRT_INTR", 8: "PENDING_VIRT_NMI",
    9: "TASK_SWITCH", 10: "CPUID", 11: "GETSEC", 12: "HLT", 13: "INVD", 14: "INVLPG",
    15: "RDPMC", 16: "RDTSC", 17: "RSM", 18: "VMCALL", 19: "VMCLEAR", 20: "VMLAUNCH",
    21: "VMPTRLD", 22: "VMPTRST", 23: "VMREAD", 24: "VMRESUME", 25: "VMWRITE", 26: "VMXOFF",
    27: "VMXON", 28: "CR_ACCESS", 29: "DR_ACCESS", 30: "IO_INSTRUCTION", 31: "MSR_READ",
    32: "MSR_WRITE", 33: "INVALID_GUEST_STATE", 34: "MSR_LOADING", 36: "MWAIT_INSTRUCTION",
    37: "MONITOR_TRAP_FLAG", 39: "MONITOR_INSTRUCTION", 40: "PAUSE_INSTRUCTION",
    41: "MCE_DURING_VMENTRY", 43: "TPR_BELOW_THRESHOLD", 44: "APIC_ACCESS",
    45: "EOI_INDUCED", 46: "ACCESS_GDTR_OR_IDTR", 47: "ACCESS_LDTR_OR_TR",
    48: "EPT_VIOLATION", 49: "EPT_MISCONFIG", 50: "INVEPT", 51: "RDTSCP",
    52: "VMX_PREEMPTION_TIMER_EXPIRED", 53: "INVVPID", 54: "WBINVD", 55: "XSETBV",
    56: "APIC_WRITE", 58: "INVPCID", 59: "VMFUNC", 62: "PML_FULL", 63: "XSAVES",
    64: "XRSTORS", 74: "BUS_LOCK", 75: "NOTIFY",
}
VMX_EXIT_BY_NAME: dict[str, int] = {v: k for k, v in VMX_EXIT_REASONS.items()}
#: Short names (as in the Intel SDM's table and the lab's own prose) accepted by
#: vmx_exit(); Xen's own names are the values of VMX_EXIT_REASONS.
VMX_EXIT_ALIASES: dict[str, str] = {
    "PAUSE": "PAUSE_INSTRUCTION", "MWAIT": "MWAIT_INSTRUCTION",
    "MONITOR": "MONITOR_INSTRUCTION", "PREEMPTION_TIMER": "VMX_PREEMPTION_TIMER_EXPIRED",
    "GDTR_IDTR_ACCESS": "ACCESS_GDTR_OR_IDTR", "LDTR_TR_ACCESS": "ACCESS_LDTR_OR_TR",
    "INTERRUPT_WINDOW": "PENDING_VIRT_INTR", "NMI_WINDOW": "PENDING_VIRT_NMI",
}
#: Bit 31 of the exit reason: the VM entry itself failed.
VMX_EXIT_REASONS_FAILED_VMENTRY = 1 << 31


def vmx_exit(name: str) -> int:
    """Basic exit reason number for a VMX name (``EXIT_REASON_`` prefix optional)."""
    n = name.upper()
    if n.startswith("EXIT_REASON_"):
        n = n[len("EXIT_REASON_"):]
    n = VMX_EXIT_ALIASES.get(n, n)
    return VMX_EXIT_BY_NAME[n]


def vmx_exit_name(nr: int) -> str:
    """Xen's name for a (possibly failed-entry) exit reason number."""
    base = nr & 0xFFFF
    name = VMX_EXIT_REASONS.get(base, f"UNKNOWN_{base}")
    if nr & VMX_EXIT_REASONS_FAILED_VMENTRY:
        return name + " (VM entry failure)"
    return name


def _svm_table() -> dict[int, str]:
    t: dict[int, str] = {}
    for i in range(16):
        t[0x00 + i] = f"CR{i}_READ"
        t[0x10 + i] = f"CR{i}_WRITE"
        t[0x20 + i] = f"DR{i}_READ"
        t[0x30 + i] = f"DR{i}_WRITE"
    excp = {0: "DE", 1: "DB", 2: "NMI", 3: "BP", 4: "OF", 5: "BR", 6: "UD", 7: "NM", 8: "DF",
            9: "09", 10: "TS", 11: "NP", 12: "SS", 13: "GP", 14: "PF", 15: "15", 16: "MF",
            17: "AC", 18: "MC", 19: "XF", 21: "CP"}
    # 0x54 (#VE, Intel only) is commented out in vmcb.h.
    for vec, mn in excp.items():
        t[0x40 + vec] = f"EXCEPTION_{mn}"
    t.update({
        0x60: "INTR", 0x61: "NMI", 0x62: "SMI", 0x63: "INIT", 0x64: "VINTR",
        0x65: "CR0_SEL_WRITE", 0x66: "IDTR_READ", 0x67: "GDTR_READ", 0x68: "LDTR_READ",
        0x69: "TR_READ", 0x6A: "IDTR_WRITE", 0x6B: "GDTR_WRITE", 0x6C: "LDTR_WRITE",
        0x6D: "TR_WRITE", 0x6E: "RDTSC", 0x6F: "RDPMC", 0x70: "PUSHF", 0x71: "POPF",
        0x72: "CPUID", 0x73: "RSM", 0x74: "IRET", 0x75: "SWINT", 0x76: "INVD", 0x77: "PAUSE",
        0x78: "HLT", 0x79: "INVLPG", 0x7A: "INVLPGA", 0x7B: "IOIO", 0x7C: "MSR",
        0x7D: "TASK_SWITCH", 0x7E: "FERR_FREEZE", 0x7F: "SHUTDOWN", 0x80: "VMRUN",
        0x81: "VMMCALL", 0x82: "VMLOAD", 0x83: "VMSAVE", 0x84: "STGI", 0x85: "CLGI",
        0x86: "SKINIT", 0x87: "RDTSCP", 0x88: "ICEBP", 0x89: "WBINVD", 0x8A: "MONITOR",
        0x8B: "MWAIT", 0x8C: "MWAIT_CONDITIONAL", 0x8D: "XSETBV", 0x8E: "RDPRU",
        0xA5: "BUS_LOCK", 0x400: "NPF",
    })
    return t


SVM_EXIT_CODES: dict[int, str] = _svm_table()
SVM_EXIT_BY_NAME: dict[str, int] = {v: k for k, v in SVM_EXIT_CODES.items()}
VMEXIT_INVALID = -1


def svm_exit(name: str) -> int:
    """SVM exit code for a name (``VMEXIT_`` prefix optional; ``EXCP_UD`` and
    ``EXCP_6`` accepted for ``EXCEPTION_UD``)."""
    n = name.upper()
    if n.startswith("VMEXIT_"):
        n = n[len("VMEXIT_"):]
    if n.startswith("EXCP_"):
        rest = n[len("EXCP_"):]
        if rest.isdigit():
            return 0x40 + int(rest)
        n = "EXCEPTION_" + rest
    return SVM_EXIT_BY_NAME[n]


def svm_exit_name(code: int) -> str:
    return SVM_EXIT_CODES.get(code, f"UNKNOWN_{code:#x}")


def svm_exception_exit(vector: int) -> int:
    """The SVM exit code of an intercepted exception: 0x40 + vector."""
    return 0x40 + vector


#: The SVM exit an AMD host reports where an Intel host reports the VMX
#: reason. CR_ACCESS stands for the CR3 write the lab intercepts (a read is CR3_READ,
#: told apart by the qualification in lab.hw.vmx.exit_code); EXCEPTION_NMI
#: depends on the vector (svm_exception_exit), the entry here is for #UD, the
#: one the lab intercepts most; an NMI itself exits as NMI (0x61).
SVM_EQUIVALENT: dict[str, str] = {
    "CPUID": "CPUID",
    "HLT": "HLT",
    "IO_INSTRUCTION": "IOIO",
    "MSR_READ": "MSR",
    "MSR_WRITE": "MSR",
    "VMCALL": "VMMCALL",
    "EXTERNAL_INTERRUPT": "INTR",
    "EPT_VIOLATION": "NPF",
    "EPT_MISCONFIG": "NPF",
    "CR_ACCESS": "CR3_WRITE",
    "INVLPG": "INVLPG",
    "TRIPLE_FAULT": "SHUTDOWN",
    "PAUSE_INSTRUCTION": "PAUSE",
    "PAUSE": "PAUSE",
    "RDTSC": "RDTSC",
    "RDTSCP": "RDTSCP",
    "PENDING_VIRT_INTR": "VINTR",
    "EXCEPTION_NMI": "EXCEPTION_UD",
}

# ---------------------------------------------------------------------------
# x86 architecture: exception vectors (xen/arch/x86/include/asm/x86-defns.h),
# MSRs (xen/arch/x86/include/asm/msr-index.h), control-register bits.
# ---------------------------------------------------------------------------

X86_EXC_DE, X86_EXC_DB, X86_EXC_NMI, X86_EXC_BP, X86_EXC_OF, X86_EXC_BR = 0, 1, 2, 3, 4, 5
X86_EXC_UD, X86_EXC_NM, X86_EXC_DF, X86_EXC_CSO, X86_EXC_TS, X86_EXC_NP = 6, 7, 8, 9, 10, 11
X86_EXC_SS, X86_EXC_GP, X86_EXC_PF, X86_EXC_SPV, X86_EXC_MF, X86_EXC_AC = 12, 13, 14, 15, 16, 17
X86_EXC_MC, X86_EXC_XM, X86_EXC_VE, X86_EXC_CP = 18, 19, 20, 21
X86_EXC_NUM = 32

X86_EXC_MNEMONICS: dict[int, str] = {
    0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM", 8: "#DF",
    10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF", 17: "#AC", 18: "#MC",
    19: "#XM", 20: "#VE", 21: "#CP",
}
X86_EXC_BY_MNEMONIC: dict[str, int] = {v: k for k, v in X86_EXC_MNEMONICS.items()}
#: Vectors that push an error code (X86_EXC_HAVE_EC, restricted to those above).
X86_EXC_HAVE_EC = frozenset((8, 10, 11, 12, 13, 14, 17, 21))


def exception_mnemonic(vector: int) -> str:
    return X86_EXC_MNEMONICS.get(vector, f"vector {vector}")


def exception_has_error_code(vector: int) -> bool:
    return vector in X86_EXC_HAVE_EC


# Page-fault error code bits (xen/arch/x86/include/asm/processor.h).
PFEC_page_present = 1 << 0
PFEC_write_access = 1 << 1
PFEC_user_mode = 1 << 2
PFEC_reserved_bit = 1 << 3
PFEC_insn_fetch = 1 << 4

MSR_IA32_TSC = 0x00000010
MSR_APIC_BASE = 0x0000001B
MSR_EFER = 0xC0000080
MSR_STAR = 0xC0000081
MSR_LSTAR = 0xC0000082
MSR_CSTAR = 0xC0000083
MSR_SYSCALL_MASK = 0xC0000084     # "FMASK" / "SFMASK" in AMD's and Intel's manuals
MSR_FS_BASE = 0xC0000100
MSR_GS_BASE = 0xC0000101
MSR_SHADOW_GS_BASE = 0xC0000102   # IA32_KERNEL_GS_BASE in Intel's manual
# The architectural names, for the lab's prose and the assembler.
IA32_TSC = MSR_IA32_TSC
IA32_APIC_BASE = MSR_APIC_BASE
IA32_EFER = MSR_EFER
IA32_STAR = MSR_STAR
IA32_LSTAR = MSR_LSTAR
IA32_CSTAR = MSR_CSTAR
IA32_FMASK = MSR_SYSCALL_MASK
IA32_FS_BASE = MSR_FS_BASE
IA32_GS_BASE = MSR_GS_BASE
IA32_KERNEL_GS_BASE = MSR_SHADOW_GS_BASE
MSR_NAMES: dict[int, str] = {
    0x10: "MSR_IA32_TSC", 0x1B: "MSR_APIC_BASE", 0xC0000080: "MSR_EFER",
    0xC0000081: "MSR_STAR", 0xC0000082: "MSR_LSTAR", 0xC0000083: "MSR_CSTAR",
    0xC0000084: "MSR_SYSCALL_MASK", 0xC0000100: "MSR_FS_BASE", 0xC0000101: "MSR_GS_BASE",
    0xC0000102: "MSR_SHADOW_GS_BASE",
}

_EFER_SCE, _EFER_LME, _EFER_LMA, _EFER_NXE = 0, 8, 10, 11
EFER_SCE = 1 << _EFER_SCE
EFER_LME = 1 << _EFER_LME
EFER_LMA = 1 << _EFER_LMA
EFER_NXE = 1 << _EFER_NXE

X86_CR0_PE = 1 << 0
X86_CR0_TS = 1 << 3
X86_CR0_WP = 1 << 16
X86_CR0_PG = 1 << 31
X86_CR4_PSE = 1 << 4
X86_CR4_PAE = 1 << 5
X86_CR4_PGE = 1 << 7

# ---------------------------------------------------------------------------
# Xen's CPUID leaves: public/arch-x86/cpuid.h, values from xen/arch/x86/cpuid.c
# (cpuid_hypervisor_leaves).
# ---------------------------------------------------------------------------

XEN_CPUID_FIRST_LEAF = 0x40000000
XEN_CPUID_FIRST_LEAF_VIRIDIAN = 0x40000100   # when Viridian is on
XEN_CPUID_SIGNATURE = "XenVMMXenVMM"
XEN_CPUID_SIGNATURE_EBX = 0x566E6558   # "XenV"
XEN_CPUID_SIGNATURE_ECX = 0x65584D4D   # "MMXe"
XEN_CPUID_SIGNATURE_EDX = 0x4D4D566E   # "nVMM"
#: Default number of Xen leaves after the first; leaf 0 EAX = base + this.
XEN_CPUID_MAX_NUM_LEAVES = 5
XEN_CPUID_MAX_LEAF = XEN_CPUID_FIRST_LEAF + XEN_CPUID_MAX_NUM_LEAVES
#: Leaf base+2: EAX = hypercall pages (always 1), EBX = base of Xen's MSRs.
#: Writing a page's GPA to that MSR installs the hypercall page. cpuid.c puts
#: 0x40000000 there (0x40000200 with Viridian).
XEN_CPUID_HYPERCALL_PAGES = 1
XEN_HYPERCALL_MSR = 0x40000000
XEN_HYPERCALL_MSR_VIRIDIAN = 0x40000200
XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD = 1 << 0   # leaf base+2 ECX, PV only


def xen_cpuid_version(major: int, minor: int) -> int:
    """EAX of leaf base+1: major in bits 31:16, minor in 15:0."""
    return ((major & 0xFFFF) << 16) | (minor & 0xFFFF)


def _u32(s: str) -> int:
    return int.from_bytes(s.encode("ascii"), "little")


assert _u32("XenV") == XEN_CPUID_SIGNATURE_EBX
assert _u32("MMXe") == XEN_CPUID_SIGNATURE_ECX
assert _u32("nVMM") == XEN_CPUID_SIGNATURE_EDX

# ---------------------------------------------------------------------------
# x86-64 PV layout: public/arch-x86/xen-x86_64.h (32-bit: xen-x86_32.h)
# ---------------------------------------------------------------------------

FLAT_RING3_CS32 = 0xE023
FLAT_RING3_CS64 = 0xE033
FLAT_RING3_DS32 = 0xE02B
FLAT_RING3_DS64 = 0x0000
FLAT_RING3_SS32 = 0xE02B
FLAT_RING3_SS64 = 0xE02B
FLAT_KERNEL_CS64 = FLAT_RING3_CS64
FLAT_KERNEL_DS64 = FLAT_RING3_DS64
FLAT_KERNEL_SS64 = FLAT_RING3_SS64
FLAT_USER_CS64 = FLAT_RING3_CS64
FLAT_USER_DS64 = FLAT_RING3_DS64
FLAT_USER_SS64 = FLAT_RING3_SS64
# 32-bit PV: the kernel runs in ring 1.
FLAT_RING1_CS = 0xE019
FLAT_RING1_DS = 0xE021
FLAT_RING1_SS = 0xE021

HYPERVISOR_VIRT_START = 0xFFFF800000000000
HYPERVISOR_VIRT_END = 0xFFFF880000000000
MACH2PHYS_VIRT_START = 0xFFFF800000000000
MACH2PHYS_VIRT_END = 0xFFFF804000000000
MACH2PHYS_NR_ENTRIES = (MACH2PHYS_VIRT_END - MACH2PHYS_VIRT_START) >> 3
HYPERVISOR_VIRT_START_PAE = 0xF5800000       # 32-bit PAE guests


def in_xen_reserved_va(va: int) -> bool:
    """Is ``va`` inside the range Xen keeps in every 64-bit PV address space?"""
    return HYPERVISOR_VIRT_START <= va < HYPERVISOR_VIRT_END


# ---------------------------------------------------------------------------
# xentrace: public/trace.h
# ---------------------------------------------------------------------------

TRC_CLS_SHIFT = 16
TRC_SUBCLS_SHIFT = 12
TRC_64_FLAG = 0x100
TRC_HD_CYCLE_FLAG = 1 << 31
TRACE_EXTRA_SHIFT = 28
TRACE_EXTRA_MAX = 7

TRC_GEN = 0x0001F000
TRC_SCHED = 0x0002F000
TRC_DOM0OP = 0x0004F000
TRC_HVM = 0x0008F000
TRC_MEM = 0x0010F000
TRC_PV = 0x0020F000
TRC_SHADOW = 0x0040F000
TRC_HW = 0x0080F000
TRC_GUEST = 0x0800F000
TRC_ALL = 0x0FFFF000

XENTRACE_CLASS: dict[str, int] = {
    "GEN": TRC_GEN, "SCHED": TRC_SCHED, "DOM0OP": TRC_DOM0OP, "HVM": TRC_HVM,
    "MEM": TRC_MEM, "PV": TRC_PV, "SHADOW": TRC_SHADOW, "HW": TRC_HW, "GUEST": TRC_GUEST,
}

# Subclasses.
TRC_SCHED_MIN = 0x00021000
TRC_SCHED_CLASS = 0x00022000
TRC_SCHED_VERBOSE = 0x00028000
TRC_HVM_ENTRYEXIT = 0x00081000
TRC_HVM_HANDLER = 0x00082000
TRC_HVM_EMUL = 0x00084000
TRC_PV_ENTRY = 0x00201000
TRC_PV_SUBCALL = 0x00202000

TRC_LOST_RECORDS = TRC_GEN + 1
TRC_TRACE_WRAP_BUFFER = TRC_GEN + 2
TRC_TRACE_CPU_CHANGE = TRC_GEN + 3
TRC_SCHED_RUNSTATE_CHANGE = TRC_SCHED_MIN + 1
TRC_SCHED_CONTINUE_RUNNING = TRC_SCHED_MIN + 2
TRC_SCHED_DOM_ADD = TRC_SCHED_VERBOSE + 1
TRC_SCHED_DOM_REM = TRC_SCHED_VERBOSE + 2
TRC_SCHED_SLEEP = TRC_SCHED_VERBOSE + 3
TRC_SCHED_WAKE = TRC_SCHED_VERBOSE + 4
TRC_SCHED_YIELD = TRC_SCHED_VERBOSE + 5
TRC_SCHED_BLOCK = TRC_SCHED_VERBOSE + 6
TRC_SCHED_SHUTDOWN = TRC_SCHED_VERBOSE + 7
TRC_SCHED_SWITCH = TRC_SCHED_VERBOSE + 10
TRC_MEM_PAGE_GRANT_MAP = TRC_MEM + 1
TRC_MEM_PAGE_GRANT_UNMAP = TRC_MEM + 2
TRC_MEM_PAGE_GRANT_TRANSFER = TRC_MEM + 3
TRC_MEM_SET_P2M_ENTRY = TRC_MEM + 4
TRC_MEM_DECREASE_RESERVATION = TRC_MEM + 5
TRC_PV_HYPERCALL = TRC_PV_ENTRY + 1
TRC_PV_TRAP = TRC_PV_ENTRY + 3
TRC_PV_PAGE_FAULT = TRC_PV_ENTRY + 4
TRC_PV_FORCED_INVALID_OP = TRC_PV_ENTRY + 5
TRC_PV_EMULATE_PRIVOP = TRC_PV_ENTRY + 6
TRC_PV_PTWR_EMULATION = TRC_PV_ENTRY + 11
TRC_PV_HYPERCALL_V2 = TRC_PV_ENTRY + 13
TRC_PV_HYPERCALL_SUBCALL = TRC_PV_SUBCALL + 14
TRC_SHADOW_FIXUP = TRC_SHADOW + 6
TRC_SHADOW_EMULATE = TRC_SHADOW + 8
TRC_HVM_VMENTRY = TRC_HVM_ENTRYEXIT + 0x01
TRC_HVM_VMX_EXIT = TRC_HVM_ENTRYEXIT + 0x02
TRC_HVM_VMX_EXIT64 = TRC_HVM_ENTRYEXIT + TRC_64_FLAG + 0x02
TRC_HVM_SVM_EXIT = TRC_HVM_ENTRYEXIT + 0x03
TRC_HVM_SVM_EXIT64 = TRC_HVM_ENTRYEXIT + TRC_64_FLAG + 0x03
TRC_HVM_PF_XEN = TRC_HVM_HANDLER + 0x01
TRC_HVM_PF_INJECT = TRC_HVM_HANDLER + 0x02
TRC_HVM_INJ_EXC = TRC_HVM_HANDLER + 0x03
TRC_HVM_INJ_VIRQ = TRC_HVM_HANDLER + 0x04
TRC_HVM_IO_READ = TRC_HVM_HANDLER + 0x06
TRC_HVM_IO_WRITE = TRC_HVM_HANDLER + 0x07
TRC_HVM_CR_READ = TRC_HVM_HANDLER + 0x08
TRC_HVM_CR_WRITE = TRC_HVM_HANDLER + 0x09
TRC_HVM_MSR_READ = TRC_HVM_HANDLER + 0x0C
TRC_HVM_MSR_WRITE = TRC_HVM_HANDLER + 0x0D
TRC_HVM_CPUID = TRC_HVM_HANDLER + 0x0E
TRC_HVM_INTR = TRC_HVM_HANDLER + 0x0F
TRC_HVM_NMI = TRC_HVM_HANDLER + 0x10
TRC_HVM_VMMCALL = TRC_HVM_HANDLER + 0x12
TRC_HVM_HLT = TRC_HVM_HANDLER + 0x13
TRC_HVM_INVLPG = TRC_HVM_HANDLER + 0x14
TRC_HVM_IOPORT_READ = TRC_HVM_HANDLER + 0x16
TRC_HVM_IOMEM_READ = TRC_HVM_HANDLER + 0x17
TRC_HVM_RDTSC = TRC_HVM_HANDLER + 0x1A
TRC_HVM_INTR_WINDOW = TRC_HVM_HANDLER + 0x20
TRC_HVM_NPF = TRC_HVM_HANDLER + 0x21
TRC_HVM_TRAP = TRC_HVM_HANDLER + 0x23
TRC_HVM_IOPORT_WRITE = TRC_HVM_HANDLER + 0x216
TRC_HVM_IOMEM_WRITE = TRC_HVM_HANDLER + 0x217

#: Every event id above by its name (without the TRC_ prefix).
XENTRACE_EVENTS: dict[str, int] = {
    name: value for value, name in _collect("TRC_", strip=True, exclude=(
        "TRC_CLS_SHIFT", "TRC_SUBCLS_SHIFT", "TRC_64_FLAG", "TRC_HD_CYCLE_FLAG", "TRC_ALL",
        "TRC_GEN", "TRC_SCHED", "TRC_DOM0OP", "TRC_HVM", "TRC_MEM", "TRC_PV", "TRC_SHADOW",
        "TRC_HW", "TRC_GUEST", "TRC_SCHED_MIN", "TRC_SCHED_CLASS", "TRC_SCHED_VERBOSE",
        "TRC_HVM_ENTRYEXIT", "TRC_HVM_HANDLER", "TRC_HVM_EMUL", "TRC_PV_ENTRY",
        "TRC_PV_SUBCALL")).items()
}
# PV_HYPERCALL_V2 word 0: op in bits 0-19, two bits per argument from bit 20.
TRC_PV_HYPERCALL_V2_ARG_MASK = 0xFFF00000


def trc_pv_hypercall_v2_arg_32(i: int) -> int:
    return 0x1 << (20 + 2 * i)


def trc_pv_hypercall_v2_arg_64(i: int) -> int:
    return 0x2 << (20 + 2 * i)


def xentrace_class_of(event: int) -> str | None:
    """The class name (``HVM``...) of an event id, by bits 16-27."""
    cls = (event >> TRC_CLS_SHIFT) & 0xFFF
    for name, mask in XENTRACE_CLASS.items():
        if cls == (mask >> TRC_CLS_SHIFT) & 0xFFF:
            return name
    return None


def xentrace_header(event: int, extra_u32: int, cycles_included: bool) -> int:
    """The first word of a t_rec: event:28 | extra_u32:3 | cycles_included:1."""
    if not 0 <= extra_u32 <= TRACE_EXTRA_MAX:
        raise ValueError("a trace record carries at most 7 extra words")
    return ((event & 0x0FFFFFFF) | (extra_u32 << TRACE_EXTRA_SHIFT)
            | (TRC_HD_CYCLE_FLAG if cycles_included else 0))
