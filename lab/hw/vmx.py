"""VMX-style root and non-root operation: the per-vCPU control structure.

A :class:`Vmcs` holds what Intel's VMCS holds, at the level the lab needs:
the guest-state area (saved on exit), the host-state area (where an exit
lands), the execution controls that decide which guest instructions and
events exit, and the exit-information fields Xen reads. The CPU consults
:meth:`Vmcs.exits_on_*` while it runs in non-root mode. On an AMD host the
same decisions are reported with SVM exit codes (the ``vendor`` field).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# VMX basic exit reasons (Intel SDM appendix C; Xen's vmx.h).
EXIT_REASONS = {
    0: "EXCEPTION_NMI", 1: "EXTERNAL_INTERRUPT", 2: "TRIPLE_FAULT", 7: "PENDING_VIRT_INTR",
    10: "CPUID", 12: "HLT", 14: "INVLPG", 16: "RDTSC", 18: "VMCALL", 28: "CR_ACCESS",
    30: "IO_INSTRUCTION", 31: "MSR_READ", 32: "MSR_WRITE", 40: "PAUSE", 48: "EPT_VIOLATION",
    49: "EPT_MISCONFIG",
}
EXIT_NUMBERS = {v: k for k, v in EXIT_REASONS.items()}

# SVM exit codes for the same events (Xen's svm/vmcb.h).
SVM_CODES = {
    "EXCEPTION_NMI": None,  # 0x40 + vector, computed
    "EXTERNAL_INTERRUPT": (0x60, "INTR"), "TRIPLE_FAULT": (0x7F, "SHUTDOWN"),
    "PENDING_VIRT_INTR": (0x64, "VINTR"), "CPUID": (0x72, "CPUID"), "HLT": (0x78, "HLT"),
    "INVLPG": (0x79, "INVLPG"), "RDTSC": (0x6E, "RDTSC"), "VMCALL": (0x81, "VMMCALL"),
    "CR_ACCESS": (0x13, "CR3_WRITE"), "IO_INSTRUCTION": (0x7B, "IOIO"), "MSR_READ": (0x7C, "MSR"),
    "MSR_WRITE": (0x7C, "MSR"), "PAUSE": (0x77, "PAUSE"), "EPT_VIOLATION": (0x400, "NPF"),
    "EPT_MISCONFIG": (0x400, "NPF"),
}


#: The guest interruptibility state's "blocking by STI" bit (SDM table 24-3; Xen's
#: VMX_INTR_SHADOW_STI in vmcs.h; an AMD VMCB keeps the same as its interrupt shadow).
INTR_BLOCKING_BY_STI = 1

#: Bits 5:4 of a CR_ACCESS qualification: the access type, 1 for ``mov reg, crN`` (SDM table 28-3).
CR_ACCESS_TYPE_MOV_FROM = 1


#: (vendor, reason) -> (name, number) for every exit whose code depends on nothing else:
#: all but SVM's exception exits (0x40 + vector) and CR accesses (read or write).
_FIXED_CODES: dict[tuple[str, str], tuple[str, int]] = {
    **{("intel", reason): (reason, number) for number, reason in EXIT_REASONS.items()},
    **{("amd", reason): (code[1], code[0]) for reason, code in SVM_CODES.items()
       if code is not None and reason != "CR_ACCESS"},
}


def exit_code(vendor: str, reason: str, vector: int | None = None, qualification: int = 0) -> tuple[str, int]:
    """(name, number) of an exit as the host's vendor reports it."""
    fixed = _FIXED_CODES.get((vendor, reason))
    if fixed is not None:
        return fixed
    if vendor == "amd":
        if reason == "EXCEPTION_NMI":
            return (f"EXCP_{vector}", 0x40 + (vector or 0))
        if reason == "CR_ACCESS" and (qualification >> 4) & 3 == CR_ACCESS_TYPE_MOV_FROM:
            # SVM reports reads and writes of each CR apart: VMEXIT_CR3_READ is 0x03 (svm/vmcb.h).
            return ("CR3_READ", 0x03)
        code, name = SVM_CODES[reason]
        return (name, code)
    return (reason, EXIT_NUMBERS[reason])


@dataclass
class Vmcs:
    """Controls and state for one vCPU in non-root operation."""
    vendor: str = "intel"
    # -- execution controls ------------------------------------------------
    hlt_exiting: bool = True
    io_exiting: bool = True                 # unconditional I/O exiting
    io_bitmap: set[int] | None = None       # when set, only these ports exit
    msr_bitmap_all: bool = False            # every MSR access exits
    msr_exit: set[int] = field(default_factory=set)
    cr3_load_exiting: bool = False          # shadow paging needs these
    cr3_store_exiting: bool = False
    invlpg_exiting: bool = False
    rdtsc_exiting: bool = False
    pause_exiting: bool = False
    external_interrupt_exiting: bool = True
    exception_bitmap: int = 0               # bit n: exception vector n exits
    ept: bool = False                       # enable EPT (HAP)
    eptp: int = 0
    # -- guest state area (written on exit, read on entry) --------------------
    guest_rip: int = 0
    guest_rsp: int = 0
    guest_cr0: int = 0
    guest_cr3: int = 0
    guest_cr4: int = 0
    guest_rflags: int = 0
    guest_cpl: int = 0
    guest_interruptibility: int = 0         # INTR_BLOCKING_BY_STI: the exit came in sti's shadow
    # -- host state area: where Xen's exit handler runs ----------------------
    host_rip: int = 0
    host_rsp: int = 0
    host_cr3: int = 0
    # -- exit information ----------------------------------------------------
    exit_reason: str = ""
    exit_number: int = 0
    exit_qualification: int = 0
    exit_instruction_length: int = 0
    guest_physical_address: int = 0
    guest_linear_address: int = 0
    exits: int = 0

    def exits_on_io(self, port: int) -> bool:
        if self.io_bitmap is not None:
            return port in self.io_bitmap
        return self.io_exiting

    def exits_on_msr(self, msr: int, write: bool) -> bool:
        return self.msr_bitmap_all or msr in self.msr_exit

    def exits_on_exception(self, vector: int) -> bool:
        return bool(self.exception_bitmap >> vector & 1)

    def record_exit(self, reason: str, qualification: int, cpu, insn_len: int) -> None:
        self.exit_reason = reason
        fixed = _FIXED_CODES.get((self.vendor, reason))
        self.exit_number = fixed[1] if fixed is not None else exit_code(self.vendor, reason,
                                                                       qualification=qualification)[1]
        self.exit_qualification = qualification
        self.exit_instruction_length = insn_len
        self.guest_rip = cpu.rip
        self.guest_rsp = cpu.regs[4]
        self.guest_cr0 = cpu.cr0
        self.guest_cr3 = cpu.cr3
        self.guest_cr4 = cpu.cr4
        self.guest_rflags = cpu.rflags
        self.guest_cpl = cpu.cpl
        self.guest_interruptibility = INTR_BLOCKING_BY_STI if cpu.int_shadow else 0
        self.exits += 1

    def snapshot(self) -> dict:
        d = dict(self.__dict__)
        d["io_bitmap"] = None if self.io_bitmap is None else sorted(self.io_bitmap)
        d["msr_exit"] = sorted(self.msr_exit)
        return d

    @classmethod
    def from_snapshot(cls, d: dict) -> "Vmcs":
        d = dict(d)
        d["io_bitmap"] = None if d["io_bitmap"] is None else set(d["io_bitmap"])
        d["msr_exit"] = set(d["msr_exit"])
        return cls(**d)
