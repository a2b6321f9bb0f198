"""Exception classes, fault status codes and vector offsets, as the Arm ARM names them.

ESR_ELx.EC values are from DDI 0487 D23.2.41 (ESR_EL1) / D23.2.42 (ESR_EL2);
the same names and numbers as Xen's ``xen/arch/arm/include/asm/processor.h``
(``HSR_EC_*``) and Linux's ``arch/arm64/include/asm/esr.h`` (``ESR_ELx_EC_*``).
"""

from __future__ import annotations

from dataclasses import dataclass

EC_UNKNOWN = 0x00
EC_WFX = 0x01
EC_ILLEGAL_STATE = 0x0E
EC_SVC64 = 0x15
EC_HVC64 = 0x16
EC_SMC64 = 0x17
EC_SYSREG = 0x18
EC_IABT_LOW = 0x20
EC_IABT_CUR = 0x21
EC_PC_ALIGN = 0x22
EC_DABT_LOW = 0x24
EC_DABT_CUR = 0x25
EC_SP_ALIGN = 0x26
EC_BRK64 = 0x3C

EC_NAMES = {
    EC_UNKNOWN: "Unknown reason (undefined instruction)", EC_WFX: "WFI/WFE", EC_ILLEGAL_STATE: "Illegal execution state",
    EC_SVC64: "SVC from AArch64", EC_HVC64: "HVC from AArch64", EC_SMC64: "SMC from AArch64",
    EC_SYSREG: "MSR/MRS/system instruction", EC_IABT_LOW: "Instruction abort from a lower EL",
    EC_IABT_CUR: "Instruction abort from the same EL", EC_PC_ALIGN: "PC alignment fault",
    EC_DABT_LOW: "Data abort from a lower EL", EC_DABT_CUR: "Data abort from the same EL",
    EC_SP_ALIGN: "SP alignment fault", EC_BRK64: "BRK from AArch64",
}

#: Data/instruction fault status codes (ISS bits 5:0), plus the lookup level in bits 1:0.
FSC_ADDRESS_SIZE = 0b000000
FSC_TRANSLATION = 0b000100
FSC_ACCESS_FLAG = 0b001000
FSC_PERMISSION = 0b001100
FSC_KINDS = {FSC_ADDRESS_SIZE: "address size fault", FSC_TRANSLATION: "translation fault",
             FSC_ACCESS_FLAG: "access flag fault", FSC_PERMISSION: "permission fault"}

# Vector table offsets (DDI 0487 D1.10.2): which stack and where from, then the kind.
VEC_CUR_SP0 = 0x000
VEC_CUR_SPX = 0x200
VEC_LOWER_A64 = 0x400
VEC_LOWER_A32 = 0x600
VEC_SYNC, VEC_IRQ, VEC_FIQ, VEC_SERROR = 0x000, 0x080, 0x100, 0x180

# HCR_EL2 bits (DDI 0487 D23.2.48), the ones Xen sets for a guest (xen/arch/arm/traps.c, HCR_GUEST_FLAGS).
HCR_VM = 1 << 0
HCR_SWIO = 1 << 1
HCR_FMO = 1 << 3
HCR_IMO = 1 << 4
HCR_AMO = 1 << 5
HCR_TWI = 1 << 13
HCR_TWE = 1 << 14
HCR_TSC = 1 << 19
HCR_TVM = 1 << 26
HCR_RW = 1 << 31

HCR_NAMES = ((HCR_VM, "VM"), (HCR_SWIO, "SWIO"), (HCR_FMO, "FMO"), (HCR_IMO, "IMO"), (HCR_AMO, "AMO"),
             (HCR_TWI, "TWI"), (HCR_TWE, "TWE"), (HCR_TSC, "TSC"), (HCR_TVM, "TVM"), (HCR_RW, "RW"))


@dataclass(frozen=True)
class Syndrome:
    """An exception as ESR_ELx describes it, plus the addresses the fault registers get."""
    ec: int
    iss: int = 0
    far: int | None = None        # FAR_ELx for aborts
    ipa: int | None = None        # the faulting IPA of a stage-2 abort (HPFAR_EL2)

    @property
    def esr(self) -> int:
        return (self.ec << 26) | (1 << 25) | (self.iss & 0x1FFFFFF)     # IL: a 32-bit instruction

    def describe(self) -> str:
        name = EC_NAMES.get(self.ec, f"EC {self.ec:#x}")
        text = f"ESR {self.esr:#010x}: EC {self.ec:#04x} {name}, ISS {self.iss:#x}"
        if self.ec in (EC_DABT_LOW, EC_DABT_CUR, EC_IABT_LOW, EC_IABT_CUR):
            fsc = self.iss & 0x3F
            kind = FSC_KINDS.get(fsc & ~3, f"FSC {fsc:#x}")
            text += f" ({kind}, level {fsc & 3}"
            if self.ec in (EC_DABT_LOW, EC_DABT_CUR):
                text += ", write" if self.iss & (1 << 6) else ", read"
            if self.iss & (1 << 7):
                text += ", during a stage-1 table walk"
            text += ")"
        return text


def describe_hcr(value: int) -> str:
    return " ".join(name for bit, name in HCR_NAMES if value & bit) or "-"
