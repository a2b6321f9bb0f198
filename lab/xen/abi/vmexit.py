"""VM exits. VMX: xen/arch/x86/include/asm/hvm/vmx/vmx.h (EXIT_REASON_<name>); the
names are the ones xenalyze prints. SVM: xen/arch/x86/hvm/svm/vmcb.h (VMEXIT_<name>).
"""

from __future__ import annotations

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
