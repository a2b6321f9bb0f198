"""The ABI tables against the reference values, written out literally."""

from __future__ import annotations

import pytest

from lab.hw import x86
from lab.xen import abi
from lab.xen.abi import hypercalls as abi_hypercalls
from xen_helpers import HYPERCALL_NR


# --- hypercalls ------------------------------------------------------------------

#: number -> the lab's name: public/xen.h's, with slots 48 and 49 under their x86 names
EXPECTED_HYPERCALLS = {nr: name for name, nr in HYPERCALL_NR.items() if name not in ("arch_0", "arch_1")}


def test_the_reference_is_the_whole_header():
    assert len(HYPERCALL_NR) == 52 and HYPERCALL_NR["hypfs_op"] == 42 and HYPERCALL_NR["arch_7"] == 55
    assert HYPERCALL_NR["mca"] == HYPERCALL_NR["arch_0"] == 48
    assert HYPERCALL_NR["paging_domctl_cont"] == HYPERCALL_NR["arch_1"] == 49
    assert sorted(EXPECTED_HYPERCALLS) == [*range(0, 11), *range(12, 43), *range(48, 56)]


def test_every_hypercall_number_and_name():
    assert {h.nr: h.name for h in abi.HYPERCALLS} == EXPECTED_HYPERCALLS
    assert [h.nr for h in abi.HYPERCALLS] == sorted(EXPECTED_HYPERCALLS)
    for nr, name in EXPECTED_HYPERCALLS.items():
        assert abi.hypercall_name(nr) == name
        assert abi.HYPERCALL_BY_NAME[name].nr == nr
        assert abi.HYPERCALL_BY_NR[nr].name == name
        assert getattr(abi_hypercalls, "__HYPERVISOR_" + name) == nr


def test_arch_slots_and_unassigned():
    assert abi.HYPERCALL_BY_NAME["arch_0"].nr == 48
    assert abi.HYPERCALL_BY_NAME["arch_1"].nr == 49
    for nr in (11, 43, 44, 45, 46, 47, 56, 63, 64, 1000):
        assert abi.hypercall_name(nr) == f"unknown_{nr}"
        assert not abi.hvm_may_call(nr)
        assert not abi.pv_may_call(nr)


PV_NO = {31, 38, 50, 51, 52, 53, 54, 55}
HVM_Y = {7, 13, 15, 17, 18, 21, 24, 27, 29, 32, 34, 35, 36, 39, 40, 41, 42, 49}
HVM_RESTRICTED = {12, 20, 33}
HVM_PIN = {26}


def test_who_may_call_what():
    for h in abi.HYPERCALLS:
        assert h.pv == (h.nr not in PV_NO), h
        if h.nr in HVM_Y:
            assert h.hvm == "y", h
        elif h.nr in HVM_RESTRICTED:
            assert h.hvm == "restricted", h
        elif h.nr in HVM_PIN:
            assert h.hvm == "pin/unpin only", h
        else:
            assert h.hvm == "-", h
        assert abi.hvm_may_call(h.nr) == (h.nr in HVM_Y | HVM_RESTRICTED | HVM_PIN)
    control = {h.nr for h in abi.HYPERCALLS if h.control_domain_only}
    assert {7, 35, 36} <= control
    assert not control & {0, 1, 12, 13, 17, 18, 20, 24, 26, 29, 32, 33, 34}


def test_hvm_sub_op_restrictions():
    assert abi.HVM_ALLOWED_GNTTABOP == {6, 2, 8, 10, 5, 0, 1, 11}
    assert abi.GNTTABOP_transfer not in abi.HVM_ALLOWED_GNTTABOP
    assert abi.HVM_ALLOWED_PHYSDEVOP == {
        abi.PHYSDEVOP_map_pirq, abi.PHYSDEVOP_unmap_pirq, abi.PHYSDEVOP_eoi,
        abi.PHYSDEVOP_irq_status_query, abi.PHYSDEVOP_get_free_pirq}
    assert abi.PHYSDEVOP_setup_gsi in abi.HVM_HWDOM_PHYSDEVOP
    assert abi.HVM_ALLOWED_MMUEXT == {0, 1, 2, 3, 4}
    assert abi.HVM_DENIED_XENMEM == {12}


def test_calling_convention():
    assert abi.HYPERCALL_ARG_REGS_64 == ("rdi", "rsi", "rdx", "r10", "r8")
    assert abi.HYPERCALL_ARG_REGS_32 == ("ebx", "ecx", "edx", "esi", "edi")
    assert abi.HYPERCALL_STUB_SIZE == 32
    assert abi.HYPERCALL_VECTOR == 0x82


def test_xenalyze_names():
    assert abi.xenalyze_hypercall_name(32) == "evtchn_op"
    assert abi.xenalyze_hypercall_name(1) == "mmu_update"


# --- errno -----------------------------------------------------------------------------

EXPECTED_ERRNO = {
    "EPERM": 1, "ENOENT": 2, "ESRCH": 3, "EINTR": 4, "EIO": 5, "ENXIO": 6, "E2BIG": 7,
    "EBADF": 9, "EAGAIN": 11, "ENOMEM": 12, "EACCES": 13, "EFAULT": 14, "EBUSY": 16,
    "EEXIST": 17, "ENODEV": 19, "EINVAL": 22, "ENOSPC": 28, "EROFS": 30, "ERANGE": 34,
    "EDEADLK": 35, "ENOSYS": 38, "ENOTEMPTY": 39, "ENODATA": 61, "ETIME": 62,
    "EOVERFLOW": 75, "ERESTART": 85, "EMSGSIZE": 90, "EOPNOTSUPP": 95, "ENOBUFS": 105,
    "EISCONN": 106, "ENOTCONN": 107, "ETIMEDOUT": 110,
}


def test_errno():
    assert abi.ERRNO == EXPECTED_ERRNO
    for name, value in EXPECTED_ERRNO.items():
        assert abi.errno_name(value) == name
        assert abi.errno_name(-value) == name
        assert getattr(abi, name) == value
    assert abi.errno_name(8) == "errno_8"


# --- PV memory management -------------------------------------------------------

def test_mmu_constants():
    assert (abi.MMU_NORMAL_PT_UPDATE, abi.MMU_MACHPHYS_UPDATE, abi.MMU_PT_UPDATE_PRESERVE_AD,
            abi.MMU_PT_UPDATE_NO_TRANSLATE) == (0, 1, 2, 3)
    expected = {
        "PIN_L1_TABLE": 0, "PIN_L2_TABLE": 1, "PIN_L3_TABLE": 2, "PIN_L4_TABLE": 3,
        "UNPIN_TABLE": 4, "NEW_BASEPTR": 5, "TLB_FLUSH_LOCAL": 6, "INVLPG_LOCAL": 7,
        "TLB_FLUSH_MULTI": 8, "INVLPG_MULTI": 9, "TLB_FLUSH_ALL": 10, "INVLPG_ALL": 11,
        "FLUSH_CACHE": 12, "SET_LDT": 13, "NEW_USER_BASEPTR": 15, "CLEAR_PAGE": 16,
        "COPY_PAGE": 17, "FLUSH_CACHE_GLOBAL": 18, "MARK_SUPER": 19, "UNMARK_SUPER": 20,
    }
    for name, value in expected.items():
        assert getattr(abi, "MMUEXT_" + name) == value
    assert abi.MMUEXT_NAMES == {v: "MMUEXT_" + k for k, v in sorted(expected.items(),
                                                                   key=lambda kv: kv[1])}
    assert (abi.UVMF_NONE, abi.UVMF_TLB_FLUSH, abi.UVMF_INVLPG) == (0, 1, 2)
    assert abi.UVMF_LOCAL == abi.UVMF_MULTI == 0 and abi.UVMF_ALL == 4
    assert (abi.VMASST_CMD_enable, abi.VMASST_CMD_disable) == (0, 1)
    assert abi.VMASST_TYPE_writable_pagetables == 2
    assert abi.VMASST_TYPE_pae_extended_cr3 == 3
    assert abi.VMASST_TYPE_runstate_update_flag == 5
    assert abi.VMASST_TYPE_m2p_strict == 32


def test_domids_and_page_types():
    assert (abi.DOMID_SELF, abi.DOMID_IO, abi.DOMID_XEN, abi.DOMID_COW, abi.DOMID_INVALID,
            abi.DOMID_ANY, abi.DOMID_IDLE) == (0x7FF0, 0x7FF1, 0x7FF2, 0x7FF3, 0x7FF4, 0x7FF5,
                                               0x7FFF)
    assert [abi.PGT_none, abi.PGT_l1_page_table, abi.PGT_l2_page_table, abi.PGT_l3_page_table,
            abi.PGT_l4_page_table, abi.PGT_seg_desc_page, abi.PGT_shared_page,
            abi.PGT_writable_page] == list(range(8))
    assert abi.PGT_TYPE_SHIFT == 61
    assert abi.pgt_type_info(abi.PGT_writable_page) == 7 << 61
    assert abi.PGT_type_mask == 0xE000000000000000
    assert abi.pgt_of(abi.pgt_type_info(abi.PGT_l4_page_table) | abi.PGT_pinned | 3) == 4
    assert not (abi.PGT_pinned | abi.PGT_validated | abi.PGT_partial) & abi.PGT_type_mask


# --- event channels ------------------------------------------------------------------

def test_event_channels():
    expected = ["bind_interdomain", "bind_virq", "bind_pirq", "close", "send", "status",
                "alloc_unbound", "bind_ipi", "bind_vcpu", "unmask", "reset", "init_control",
                "expand_array", "set_priority"]
    for value, name in enumerate(expected):
        assert getattr(abi, "EVTCHNOP_" + name) == value
        assert abi.EVTCHNOP_NAMES[value] == name
    for value, name in enumerate(["closed", "unbound", "interdomain", "pirq", "virq", "ipi"]):
        assert getattr(abi, "EVTCHNSTAT_" + name) == value
    assert abi.EVTCHN_2L_NR_CHANNELS_64 == 4096
    assert abi.EVTCHN_2L_NR_CHANNELS_32 == 1024
    assert abi.EVTCHN_FIFO_NR_CHANNELS == 131072
    assert abi.EVTCHN_FIFO_PRIORITY_DEFAULT == 7


def test_virqs():
    expected = {"TIMER": (0, "V"), "DEBUG": (1, "V"), "CONSOLE": (2, "G"),
                "DOM_EXC": (3, "G"), "TBUF": (4, "G"), "DEBUGGER": (6, "G"),
                "XENOPROF": (7, "V"), "CON_RING": (8, "G"), "PCPU_STATE": (9, "G"),
                "MEM_EVENT": (10, "G"), "ARGO": (11, "D"), "ENOMEM": (12, "G"),
                "XENPMU": (13, "V")}
    for name, (value, cls) in expected.items():
        assert getattr(abi, "VIRQ_" + name) == value
        assert abi.VIRQ_CLASS[value] == cls
        assert abi.VIRQ_NAMES[value] == "VIRQ_" + name
    for i in range(8):
        assert getattr(abi, f"VIRQ_ARCH_{i}") == 16 + i
    assert abi.VIRQ_MCA == 16
    assert abi.NR_VIRQS == 24
    assert abi.virq_is_per_vcpu(abi.VIRQ_TIMER)
    assert not abi.virq_is_per_vcpu(abi.VIRQ_CONSOLE)


# --- grants ------------------------------------------------------------------------------

def test_grant_ops_and_flags():
    ops = ["map_grant_ref", "unmap_grant_ref", "setup_table", "dump_table", "transfer", "copy",
           "query_size", "unmap_and_replace", "set_version", "get_status_frames",
           "get_version", "swap_grant_ref", "cache_flush"]
    for value, name in enumerate(ops):
        assert getattr(abi, "GNTTABOP_" + name) == value
    assert (abi.GTF_invalid, abi.GTF_permit_access, abi.GTF_accept_transfer,
            abi.GTF_transitive) == (0, 1, 2, 3)
    assert (abi.GTF_readonly, abi.GTF_reading, abi.GTF_writing) == (0x4, 0x8, 0x10)
    assert (abi.GTF_PWT, abi.GTF_PCD, abi.GTF_PAT, abi.GTF_sub_page) == (0x20, 0x40, 0x80,
                                                                          0x100)
    assert (abi.GNTMAP_device_map, abi.GNTMAP_host_map, abi.GNTMAP_readonly,
            abi.GNTMAP_application_map, abi.GNTMAP_contains_pte) == (1, 2, 4, 8, 16)


def test_grant_status():
    expected = {"okay": 0, "general_error": -1, "bad_domain": -2, "bad_gntref": -3,
                "bad_handle": -4, "bad_virt_addr": -5, "bad_dev_addr": -6,
                "no_device_space": -7, "permission_denied": -8, "bad_page": -9,
                "bad_copy_arg": -10, "address_too_big": -11, "eagain": -12, "no_space": -13}
    for name, value in expected.items():
        assert getattr(abi, "GNTST_" + name) == value
        assert abi.gntst_name(value) == "GNTST_" + name
    assert abi.gntst_message(-3) == "invalid grant reference"
    assert abi.GRANT_ENTRY_V1_SIZE == 8
    assert abi.GRANT_ENTRIES_V1_PER_PAGE == 512
    assert abi.GNTTAB_RESERVED_CONSOLE == 0
    assert abi.GNTTAB_RESERVED_XENSTORE == 1
    assert abi.GNTTAB_NR_RESERVED_ENTRIES == abi.GNTTAB_FIRST_FREE_REF == 8


# --- rings -------------------------------------------------------------------------------

def test_rings_blkif_netif():
    assert abi.RING_HEADER_SIZE == 64
    assert [abi.BLKIF_OP_READ, abi.BLKIF_OP_WRITE, abi.BLKIF_OP_WRITE_BARRIER,
            abi.BLKIF_OP_FLUSH_DISKCACHE, abi.BLKIF_OP_DISCARD, abi.BLKIF_OP_INDIRECT] == \
        [0, 1, 2, 3, 5, 6]
    assert abi.BLKIF_MAX_SEGMENTS_PER_REQUEST == 11
    assert abi.BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST == 8
    assert abi.BLKIF_REQUEST_SIZE == 112
    assert abi.BLKIF_RING_SIZE == 32
    assert (abi.BLKIF_RSP_OKAY, abi.BLKIF_RSP_ERROR, abi.BLKIF_RSP_EOPNOTSUPP) == (0, -1, -2)
    assert (abi.VDISK_CDROM, abi.VDISK_REMOVABLE, abi.VDISK_READONLY) == (1, 2, 4)
    assert abi.XEN_NETIF_TX_RING_SIZE == abi.XEN_NETIF_RX_RING_SIZE == 256
    assert (abi.NETTXF_csum_blank, abi.NETTXF_data_validated, abi.NETTXF_more_data,
            abi.NETTXF_extra_info) == (1, 2, 4, 8)
    assert (abi.NETIF_RSP_OKAY, abi.NETIF_RSP_ERROR, abi.NETIF_RSP_DROPPED,
            abi.NETIF_RSP_NULL) == (0, -1, -2, 1)
    assert abi.XEN_NETIF_NR_SLOTS_MIN == 18
    assert abi.ring_size(112, 2) == 64


# --- xenstore and xenbus -----------------------------------------------------------

def test_xenstore_message_types():
    expected = ["CONTROL", "DIRECTORY", "READ", "GET_PERMS", "WATCH", "UNWATCH",
                "TRANSACTION_START", "TRANSACTION_END", "INTRODUCE", "RELEASE",
                "GET_DOMAIN_PATH", "WRITE", "MKDIR", "RM", "SET_PERMS", "WATCH_EVENT", "ERROR",
                "IS_DOMAIN_INTRODUCED", "RESUME", "SET_TARGET"]
    for value, name in enumerate(expected):
        assert getattr(abi, "XS_" + name) == value
        assert abi.XS_NAMES[value] == "XS_" + name
    later = {"RESET_WATCHES": 21, "DIRECTORY_PART": 22, "GET_FEATURE": 23, "SET_FEATURE": 24,
             "GET_QUOTA": 25, "SET_QUOTA": 26}
    for name, value in later.items():
        assert getattr(abi, "XS_" + name) == value
    assert 20 not in abi.XS_NAMES
    assert len(abi.XS_NAMES) == 26
    assert abi.XENSTORE_PAYLOAD_MAX == 4096
    assert abi.XENSTORE_RING_SIZE == 1024
    assert abi.XENSTORE_ABS_PATH_MAX == 3072


def test_xenbus_state():
    names = ["Unknown", "Initialising", "InitWait", "Initialised", "Connected", "Closing",
             "Closed", "Reconfiguring", "Reconfigured"]
    for value, short in enumerate(names):
        st = abi.XenbusState(value)
        assert st.name == "XenbusState" + short
        assert st.short == short
        assert getattr(abi, "XenbusState" + short) == value
    assert int(abi.XenbusState.XenbusStateConnected) == 4


# --- HVM -------------------------------------------------------------------------------

def test_hvm_params_and_ops():
    assert (abi.HVM_PARAM_CALLBACK_IRQ, abi.HVM_PARAM_STORE_PFN, abi.HVM_PARAM_STORE_EVTCHN,
            abi.HVM_PARAM_IOREQ_PFN, abi.HVM_PARAM_VIRIDIAN, abi.HVM_PARAM_TIMER_MODE,
            abi.HVM_PARAM_CONSOLE_PFN, abi.HVM_PARAM_CONSOLE_EVTCHN) == (0, 1, 2, 5, 9, 10,
                                                                         17, 18)
    assert (abi.HVMOP_set_param, abi.HVMOP_get_param, abi.HVMOP_flush_tlbs,
            abi.HVMOP_get_time, abi.HVMOP_set_evtchn_upcall_vector) == (0, 1, 5, 10, 23)
    assert abi.HVM_PARAM_CALLBACK_TYPE_VECTOR == 2
    assert abi.HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT == 56
    assert abi.HYPERVISOR_CALLBACK_VECTOR == 0xF3


# --- sched_op, callbacks, console, vcpu_op, memory_op, xen_version ---------------------

def test_sched_op_and_shutdown():
    cmds = ["yield", "block", "shutdown", "poll", "remote_shutdown", "shutdown_code",
            "watchdog", "pin_override"]
    for value, name in enumerate(cmds):
        assert getattr(abi, "SCHEDOP_" + name) == value
    reasons = ["poweroff", "reboot", "suspend", "crash", "watchdog", "soft_reset"]
    for value, name in enumerate(reasons):
        assert getattr(abi, "SHUTDOWN_" + name) == value


def test_callbacks_console_segbase():
    assert (abi.CALLBACKTYPE_event, abi.CALLBACKTYPE_failsafe, abi.CALLBACKTYPE_syscall,
            abi.CALLBACKTYPE_nmi, abi.CALLBACKTYPE_sysenter, abi.CALLBACKTYPE_syscall32) == \
        (0, 1, 2, 4, 5, 7)
    assert (abi.CONSOLEIO_write, abi.CONSOLEIO_read) == (0, 1)
    assert (abi.SEGBASE_FS, abi.SEGBASE_GS_USER, abi.SEGBASE_GS_KERNEL) == (0, 1, 2)


def test_vcpu_memory_version_features():
    vcpu = ["initialise", "up", "down", "is_up", "get_runstate_info",
            "register_runstate_memory_area", "set_periodic_timer", "stop_periodic_timer",
            "set_singleshot_timer", "stop_singleshot_timer", "register_vcpu_info"]
    for value, name in enumerate(vcpu):
        assert getattr(abi, "VCPUOP_" + name) == value
    mem = {"increase_reservation": 0, "decrease_reservation": 1, "maximum_ram_page": 2,
           "current_reservation": 3, "maximum_reservation": 4, "machphys_mfn_list": 5,
           "populate_physmap": 6, "add_to_physmap": 7, "memory_map": 9,
           "machine_memory_map": 10, "machphys_mapping": 12}
    for name, value in mem.items():
        assert getattr(abi, "XENMEM_" + name) == value
    ver = ["version", "extraversion", "compile_info", "capabilities", "changeset",
           "platform_parameters", "get_features", "pagesize", "guest_handle", "commandline"]
    for value, name in enumerate(ver):
        assert getattr(abi, "XENVER_" + name) == value
    feat = {"writable_page_tables": 0, "writable_descriptor_tables": 1,
            "auto_translated_physmap": 2, "supervisor_mode_kernel": 3,
            "pae_pgdir_above_4gb": 4, "mmu_pt_update_preserve_ad": 5,
            "hvm_callback_vector": 8, "hvm_safe_pvclock": 9, "hvm_pirqs": 10, "dom0": 11,
            "memory_op_vnode_supported": 13, "not_direct_mapped": 16, "direct_mapped": 17,
            "runstate_phys_area": 18, "vcpu_time_phys_area": 19, "dm_msix_all_writes": 20}
    for name, value in feat.items():
        assert getattr(abi, "XENFEAT_" + name) == value
    assert (abi.RUNSTATE_running, abi.RUNSTATE_runnable, abi.RUNSTATE_blocked,
            abi.RUNSTATE_offline) == (0, 1, 2, 3)


# --- VM exits --------------------------------------------------------------------------

EXPECTED_VMX = {
    0: "EXCEPTION_NMI", 1: "EXTERNAL_INTERRUPT", 2: "TRIPLE_FAULT", 3: "INIT", 4: "SIPI",
    5: "IO_SMI", 6: "OTHER_SMI", 7: "PENDING_VIRT_INTR", 8: "PENDING_VIRT_NMI",
    9: "TASK_SWITCH", 10: "CPUID", 11: "GETSEC", 12: "HLT", 13: "INVD", 14: "INVLPG",
    15: "RDPMC", 16: "RDTSC", 17: "RSM", 18: "VMCALL", 19: "VMCLEAR", 20: "VMLAUNCH",
    21: "VMPTRLD", 22: "VMPTRST", 23: "VMREAD", 24: "VMRESUME", 25: "VMWRITE", 26: "VMXOFF",
    27: "VMXON", 28: "CR_ACCESS", 29: "DR_ACCESS", 30: "IO_INSTRUCTION", 31: "MSR_READ",
    32: "MSR_WRITE", 33: "INVALID_GUEST_STATE", 34: "MSR_LOADING", 37: "MONITOR_TRAP_FLAG",
    41: "MCE_DURING_VMENTRY", 43: "TPR_BELOW_THRESHOLD", 44: "APIC_ACCESS", 45: "EOI_INDUCED",
    48: "EPT_VIOLATION", 49: "EPT_MISCONFIG", 50: "INVEPT", 51: "RDTSCP", 53: "INVVPID",
    54: "WBINVD", 55: "XSETBV", 56: "APIC_WRITE", 58: "INVPCID", 59: "VMFUNC", 62: "PML_FULL",
    63: "XSAVES", 64: "XRSTORS", 74: "BUS_LOCK", 75: "NOTIFY",
}
# The reference abbreviates these; vmx.h (and xenalyze) spell them out.
EXPECTED_VMX_LONG = {36: ("MWAIT", "MWAIT_INSTRUCTION"),
                     39: ("MONITOR", "MONITOR_INSTRUCTION"),
                     40: ("PAUSE", "PAUSE_INSTRUCTION"),
                     46: ("GDTR_IDTR_ACCESS", "ACCESS_GDTR_OR_IDTR"),
                     47: ("LDTR_TR_ACCESS", "ACCESS_LDTR_OR_TR"),
                     52: ("PREEMPTION_TIMER", "VMX_PREEMPTION_TIMER_EXPIRED")}


def test_vmx_exit_reasons():
    for nr, name in EXPECTED_VMX.items():
        assert abi.VMX_EXIT_REASONS[nr] == name
        assert abi.vmx_exit(name) == nr
        assert abi.vmx_exit("EXIT_REASON_" + name) == nr
    for nr, (short, xen_name) in EXPECTED_VMX_LONG.items():
        assert abi.VMX_EXIT_REASONS[nr] == xen_name
        assert abi.vmx_exit(short) == nr
        assert abi.vmx_exit(xen_name) == nr
    assert set(abi.VMX_EXIT_REASONS) == set(EXPECTED_VMX) | set(EXPECTED_VMX_LONG)
    assert abi.vmx_exit_name(30) == "IO_INSTRUCTION"
    assert abi.vmx_exit_name((1 << 31) | 33) == "INVALID_GUEST_STATE (VM entry failure)"
    with pytest.raises(KeyError):
        abi.vmx_exit("NOT_A_REASON")


def test_svm_exit_codes():
    for n in range(16):
        assert abi.SVM_EXIT_CODES[n] == f"CR{n}_READ"
        assert abi.SVM_EXIT_CODES[0x10 + n] == f"CR{n}_WRITE"
        assert abi.SVM_EXIT_CODES[0x20 + n] == f"DR{n}_READ"
        assert abi.SVM_EXIT_CODES[0x30 + n] == f"DR{n}_WRITE"
    expected = {0x13: "CR3_WRITE", 0x46: "EXCEPTION_UD", 0x4D: "EXCEPTION_GP",
                0x4E: "EXCEPTION_PF", 0x60: "INTR", 0x61: "NMI", 0x64: "VINTR", 0x6E: "RDTSC",
                0x72: "CPUID", 0x77: "PAUSE", 0x78: "HLT", 0x79: "INVLPG", 0x7B: "IOIO",
                0x7C: "MSR", 0x7F: "SHUTDOWN", 0x80: "VMRUN", 0x81: "VMMCALL", 0x87: "RDTSCP",
                0x8D: "XSETBV", 0x400: "NPF"}
    for code, name in expected.items():
        assert abi.SVM_EXIT_CODES[code] == name
        assert abi.svm_exit(name) == code
        assert abi.svm_exit("VMEXIT_" + name) == code
    assert abi.svm_exit("EXCP_UD") == 0x46
    assert abi.svm_exit("EXCP_13") == 0x4D
    assert abi.svm_exception_exit(14) == 0x4E
    assert 0x54 not in abi.SVM_EXIT_CODES


def test_svm_equivalents():
    lab_reasons = ["CPUID", "HLT", "IO_INSTRUCTION", "MSR_READ", "MSR_WRITE", "VMCALL",
                   "EXTERNAL_INTERRUPT", "EPT_VIOLATION", "CR_ACCESS", "INVLPG",
                   "TRIPLE_FAULT", "PAUSE", "RDTSC", "EXCEPTION_NMI"]
    for r in lab_reasons:
        assert abi.SVM_EQUIVALENT[r] in abi.SVM_EXIT_BY_NAME
    got = {r: abi.svm_exit(abi.SVM_EQUIVALENT[r]) for r in lab_reasons}
    assert got["CPUID"] == 0x72 and got["HLT"] == 0x78 and got["IO_INSTRUCTION"] == 0x7B
    assert got["MSR_READ"] == got["MSR_WRITE"] == 0x7C and got["VMCALL"] == 0x81
    assert got["EXTERNAL_INTERRUPT"] == 0x60 and got["EPT_VIOLATION"] == 0x400
    assert got["CR_ACCESS"] == 0x13 and got["INVLPG"] == 0x79
    assert got["TRIPLE_FAULT"] == 0x7F and got["PAUSE"] == 0x77 and got["RDTSC"] == 0x6E
    for reason in abi.SVM_EQUIVALENT:
        abi.vmx_exit(reason)          # every key is a VMX reason (or an accepted alias)


# --- x86 (the architecture's numbers live in lab.hw.x86, not in Xen's ABI) -------------------

def test_exceptions():
    expected = {0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM",
                8: "#DF", 10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF",
                17: "#AC", 18: "#MC", 19: "#XM", 20: "#VE", 21: "#CP"}
    assert x86.X86_EXC_MNEMONICS == expected
    assert x86.X86_EXC_HAVE_EC == {8, 10, 11, 12, 13, 14, 17, 21}
    assert x86.exception_has_error_code(14) and not x86.exception_has_error_code(6)
    assert x86.exception_mnemonic(13) == "#GP"
    assert x86.X86_EXC_CONTRIBUTORY == {0, 10, 11, 12, 13}
    assert not hasattr(abi, "X86_EXC_PF")


def test_msrs_and_control_bits():
    # Xen's msr-index.h names; Intel's manual calls them IA32_EFER, IA32_FMASK, IA32_KERNEL_GS_BASE...
    assert x86.MSR_EFER == 0xC0000080
    assert x86.MSR_STAR == 0xC0000081 and x86.MSR_LSTAR == 0xC0000082
    assert x86.MSR_CSTAR == 0xC0000083 and x86.MSR_SYSCALL_MASK == 0xC0000084
    assert x86.MSR_FS_BASE == 0xC0000100 and x86.MSR_GS_BASE == 0xC0000101
    assert x86.MSR_SHADOW_GS_BASE == 0xC0000102
    assert x86.MSR_IA32_TSC == 0x10 and x86.MSR_APIC_BASE == 0x1B
    assert (x86.EFER_SCE, x86.EFER_LME, x86.EFER_LMA, x86.EFER_NXE) == (1, 1 << 8, 1 << 10,
                                                                        1 << 11)
    assert (x86.X86_CR0_PE, x86.X86_CR0_WP, x86.X86_CR0_PG) == (1, 1 << 16, 1 << 31)
    assert (x86.X86_CR4_PAE, x86.X86_CR4_PGE) == (1 << 5, 1 << 7)
    assert (x86.PFEC_page_present, x86.PFEC_write_access, x86.PFEC_user_mode,
            x86.PFEC_reserved_bit, x86.PFEC_insn_fetch) == (1, 2, 4, 8, 16)
    assert x86.is_canonical(0x7FFF_FFFF_FFFF) and x86.is_canonical(0xFFFF_8000_0000_0000)
    assert not x86.is_canonical(0x8000_0000_0000) and not x86.is_canonical(1 << 64)
    assert not x86.is_canonical(-1)


def test_xen_cpuid_leaves():
    assert abi.XEN_CPUID_FIRST_LEAF == 0x40000000
    sig = b"".join(v.to_bytes(4, "little") for v in (
        abi.XEN_CPUID_SIGNATURE_EBX, abi.XEN_CPUID_SIGNATURE_ECX, abi.XEN_CPUID_SIGNATURE_EDX))
    assert sig == b"XenVMMXenVMM" == abi.XEN_CPUID_SIGNATURE.encode()
    assert abi.XEN_CPUID_MAX_LEAF == 0x40000005
    assert abi.xen_cpuid_version(4, 23) == 0x00040017
    assert abi.XEN_CPUID_HYPERCALL_PAGES == 1
    assert abi.XEN_HYPERCALL_MSR == 0x40000000
    assert abi.XEN_CPUID_FIRST_LEAF_VIRIDIAN == 0x40000100


def test_pv_layout():
    assert abi.FLAT_KERNEL_CS64 == abi.FLAT_USER_CS64 == 0xE033
    assert abi.FLAT_RING1_CS == 0xE019
    assert abi.HYPERVISOR_VIRT_START == 0xFFFF800000000000
    assert abi.HYPERVISOR_VIRT_END == 0xFFFF880000000000
    assert (abi.MACH2PHYS_VIRT_START, abi.MACH2PHYS_VIRT_END) == (0xFFFF800000000000,
                                                                  0xFFFF804000000000)
    assert abi.in_xen_reserved_va(0xFFFF800000001000)
    assert not abi.in_xen_reserved_va(0xFFFF880000000000)
    assert abi.HYPERVISOR_VIRT_START_PAE == 0xF5800000


# --- xentrace --------------------------------------------------------------------------

def test_xentrace_classes_and_events():
    assert abi.XENTRACE_CLASS == {
        "GEN": 0x0001F000, "SCHED": 0x0002F000, "DOM0OP": 0x0004F000, "HVM": 0x0008F000,
        "MEM": 0x0010F000, "PV": 0x0020F000, "SHADOW": 0x0040F000, "HW": 0x0080F000,
        "GUEST": 0x0800F000}
    expected = {
        "LOST_RECORDS": 0x0001F001, "TRACE_CPU_CHANGE": 0x0001F003,
        "SCHED_RUNSTATE_CHANGE": 0x00021001, "SCHED_DOM_ADD": 0x00028001,
        "SCHED_WAKE": 0x00028004, "SCHED_BLOCK": 0x00028006, "SCHED_SWITCH": 0x0002800A,
        "MEM_PAGE_GRANT_MAP": 0x0010F001, "MEM_PAGE_GRANT_UNMAP": 0x0010F002,
        "MEM_SET_P2M_ENTRY": 0x0010F004, "PV_TRAP": 0x00201003, "PV_PAGE_FAULT": 0x00201004,
        "PV_EMULATE_PRIVOP": 0x00201006, "PV_PTWR_EMULATION": 0x0020100B,
        "PV_HYPERCALL_V2": 0x0020100D, "PV_HYPERCALL_SUBCALL": 0x0020200E,
        "SHADOW_FIXUP": 0x0040F006, "HVM_VMENTRY": 0x00081001, "HVM_VMX_EXIT": 0x00081002,
        "HVM_VMX_EXIT64": 0x00081102, "HVM_SVM_EXIT": 0x00081003,
        "HVM_INJ_VIRQ": 0x00082004, "HVM_MSR_READ": 0x0008200C,
        "HVM_MSR_WRITE": 0x0008200D, "HVM_CPUID": 0x0008200E, "HVM_VMMCALL": 0x00082012,
        "HVM_HLT": 0x00082013, "HVM_IOPORT_READ": 0x00082016,
        "HVM_IOPORT_WRITE": 0x00082216, "HVM_IOMEM_READ": 0x00082017,
        "HVM_IOMEM_WRITE": 0x00082217, "HVM_NPF": 0x00082021,
    }
    for name, value in expected.items():
        assert abi.XENTRACE_EVENTS[name] == value, name
        assert getattr(abi, "TRC_" + name) == value
    assert abi.TRC_64_FLAG == 0x100
    assert abi.xentrace_class_of(abi.TRC_HVM_VMX_EXIT) == "HVM"
    assert abi.xentrace_class_of(abi.TRC_PV_HYPERCALL_V2) == "PV"
    assert abi.xentrace_class_of(abi.TRC_SCHED_SWITCH) == "SCHED"
    assert abi.trc_pv_hypercall_v2_arg_64(0) == 0x2 << 20
    assert abi.xentrace_header(abi.TRC_HVM_CPUID, 2, True) == (0x0008200E | (2 << 28)
                                                               | (1 << 31))
    with pytest.raises(ValueError):
        abi.xentrace_header(abi.TRC_HVM_CPUID, 8, False)
