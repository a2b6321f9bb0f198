"""The AArch64 system registers the Arm profile knows, by name and encoding.

Each register is named by its (op0, op1, CRn, CRm, op2) tuple as in the Arm
Architecture Reference Manual (DDI 0487, D23 "AArch64 System Register
Descriptions"; the same tuples as Linux's ``arch/arm64/include/asm/sysreg.h``
and Xen's ``xen/arch/arm/include/asm/sysregs.h``). ``el`` is the lowest
exception level that may access it: an access from below is Undefined, or
traps to EL2 where HCR_EL2 says so.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SysReg:
    name: str
    op0: int
    op1: int
    crn: int
    crm: int
    op2: int
    el: int                 # lowest EL that may access it
    writable: bool = True
    doc: str = ""

    @property
    def packed(self) -> int:
        """Bits 19-5 of the MSR/MRS word, shifted down: op0<0>, op1, CRn, CRm, op2."""
        return ((self.op0 & 1) << 14) | (self.op1 << 11) | (self.crn << 7) | (self.crm << 3) | self.op2


_TABLE = [
    # Identification.
    SysReg("midr_el1", 3, 0, 0, 0, 0, 1, False, "main ID: implementer and part number"),
    SysReg("mpidr_el1", 3, 0, 0, 0, 5, 1, False, "multiprocessor affinity: which CPU this is"),
    SysReg("currentel", 3, 0, 4, 2, 2, 1, False, "the current exception level, in bits 3:2"),
    # PSTATE fields as registers.
    SysReg("nzcv", 3, 3, 4, 2, 0, 0, True, "the condition flags N, Z, C, V in bits 31:28"),
    SysReg("daif", 3, 3, 4, 2, 1, 0, True, "the interrupt masks D, A, I, F in bits 9:6"),
    SysReg("spsel", 3, 0, 4, 2, 0, 1, True, "which stack pointer: SP_EL0 (0) or SP_ELx (1)"),
    # EL1: the guest kernel's registers.
    SysReg("sctlr_el1", 3, 0, 1, 0, 0, 1, True, "system control at EL1&0: M (bit 0) turns on stage-1 translation"),
    SysReg("ttbr0_el1", 3, 0, 2, 0, 0, 1, True, "stage-1 table base for the lower VA range (ASID in 63:48)"),
    SysReg("ttbr1_el1", 3, 0, 2, 0, 1, 1, True, "stage-1 table base for the upper VA range"),
    SysReg("tcr_el1", 3, 0, 2, 0, 2, 1, True, "translation control: T0SZ, T1SZ, granule sizes"),
    SysReg("mair_el1", 3, 0, 10, 2, 0, 1, True, "memory attributes indexed by a descriptor's AttrIndx"),
    SysReg("vbar_el1", 3, 0, 12, 0, 0, 1, True, "the EL1 exception vector table's base"),
    SysReg("esr_el1", 3, 0, 5, 2, 0, 1, True, "syndrome of the last exception taken to EL1"),
    SysReg("far_el1", 3, 0, 6, 0, 0, 1, True, "faulting virtual address of the last abort taken to EL1"),
    SysReg("elr_el1", 3, 0, 4, 0, 1, 1, True, "where an exception taken to EL1 returns (eret)"),
    SysReg("spsr_el1", 3, 0, 4, 0, 0, 1, True, "PSTATE saved when an exception was taken to EL1"),
    SysReg("sp_el0", 3, 0, 4, 1, 0, 1, True, "EL0's stack pointer"),
    SysReg("tpidr_el1", 3, 0, 13, 0, 4, 1, True, "a kernel's per-CPU pointer"),
    SysReg("tpidr_el0", 3, 3, 13, 0, 2, 0, True, "a thread pointer"),
    # EL2: Xen's registers.
    SysReg("hcr_el2", 3, 4, 1, 1, 0, 2, True, "hypervisor configuration: VM (stage 2), IMO, TWI, TVM ..."),
    SysReg("sctlr_el2", 3, 4, 1, 0, 0, 2, True, "system control at EL2"),
    SysReg("ttbr0_el2", 3, 4, 2, 0, 0, 2, True, "EL2's own stage-1 tables (Xen's address space)"),
    SysReg("tcr_el2", 3, 4, 2, 0, 2, 2, True, "EL2's translation control"),
    SysReg("vttbr_el2", 3, 4, 2, 1, 0, 2, True, "stage-2 table base of the running guest, VMID in 55:48"),
    SysReg("vtcr_el2", 3, 4, 2, 1, 2, 2, True, "stage-2 translation control: T0SZ, SL0, granule"),
    SysReg("mair_el2", 3, 4, 10, 2, 0, 2, True, "EL2's memory attributes"),
    SysReg("vbar_el2", 3, 4, 12, 0, 0, 2, True, "Xen's exception vector table"),
    SysReg("esr_el2", 3, 4, 5, 2, 0, 2, True, "syndrome of the last exception taken to EL2"),
    SysReg("far_el2", 3, 4, 6, 0, 0, 2, True, "faulting virtual address of the last abort taken to EL2"),
    SysReg("hpfar_el2", 3, 4, 6, 0, 4, 2, True, "faulting IPA of a stage-2 abort (IPA bits 47:12 in 39:4)"),
    SysReg("elr_el2", 3, 4, 4, 0, 1, 2, True, "where an exception taken to EL2 returns"),
    SysReg("spsr_el2", 3, 4, 4, 0, 0, 2, True, "PSTATE saved when an exception was taken to EL2"),
    SysReg("sp_el1", 3, 4, 4, 1, 0, 2, True, "EL1's stack pointer, as EL2 sees it"),
    SysReg("vmpidr_el2", 3, 4, 0, 0, 5, 2, True, "the MPIDR value a guest reads"),
    # Generic timer.
    SysReg("cntfrq_el0", 3, 3, 14, 0, 0, 0, False, "the system counter's frequency in Hz"),
    SysReg("cntvct_el0", 3, 3, 14, 0, 2, 0, False, "the virtual count: physical count minus CNTVOFF_EL2"),
    SysReg("cntv_tval_el0", 3, 3, 14, 3, 0, 0, True, "virtual timer: ticks until it fires"),
    SysReg("cntv_ctl_el0", 3, 3, 14, 3, 1, 0, True, "virtual timer control: ENABLE, IMASK, ISTATUS"),
    SysReg("cntv_cval_el0", 3, 3, 14, 3, 2, 0, True, "virtual timer compare value"),
    SysReg("cntvoff_el2", 3, 4, 14, 0, 3, 2, True, "offset of a guest's virtual count"),
    SysReg("cnthctl_el2", 3, 4, 14, 1, 0, 2, True, "which timer registers EL1 may use"),
    # GICv3 CPU interface.
    SysReg("icc_pmr_el1", 3, 0, 4, 6, 0, 1, True, "interrupt priority mask"),
    SysReg("icc_iar1_el1", 3, 0, 12, 12, 0, 1, False, "acknowledge: the INTID of the highest pending interrupt"),
    SysReg("icc_eoir1_el1", 3, 0, 12, 12, 1, 1, True, "end of interrupt: write the INTID back"),
    SysReg("icc_igrpen1_el1", 3, 0, 12, 12, 7, 1, True, "enable group 1 interrupts"),
    SysReg("ich_hcr_el2", 3, 4, 12, 11, 0, 2, True, "virtual CPU interface control (En, bit 0)"),
    SysReg("ich_vtr_el2", 3, 4, 12, 11, 1, 2, False, "how many list registers there are"),
    SysReg("ich_elrsr_el2", 3, 4, 12, 11, 5, 2, False, "which list registers are empty"),
] + [SysReg(f"ich_lr{n}_el2", 3, 4, 12, 12 + n // 8, n % 8, 2, True,
            f"list register {n}: a virtual interrupt Xen injects (vINTID, priority, state)") for n in range(4)]

SYSREGS: dict[str, SysReg] = {r.name: r for r in _TABLE}
SYSREG_BY_ENCODING: dict[int, SysReg] = {r.packed: r for r in _TABLE}

#: Registers whose writes HCR_EL2.TVM traps to EL2 (the virtual memory controls, DDI 0487 D13.2.46).
TVM_TRAPPED = frozenset({"sctlr_el1", "ttbr0_el1", "ttbr1_el1", "tcr_el1", "mair_el1", "esr_el1", "far_el1"})
