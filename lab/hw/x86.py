"""The x86 architecture's own numbers: one home for every layer above the ISA.

Exception vectors, the page-fault error code, MSRs, EFER, control-register
and page-table entry bits are the processor's, not Xen's, so they live here
(the hardware layer) rather than in ``lab.xen.abi``. Names are Xen's where Xen
names them (xen/arch/x86/include/asm/x86-defns.h, msr-index.h, processor.h,
x86_64/page.h), so a learner reading Xen's source finds the same word; the
positions are the Intel SDM's.
"""

from __future__ import annotations

# ---------------------------------------------------------------------------
# Exception vectors (asm/x86-defns.h).
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


#: Contributory exceptions: two of these in a row make a double fault (SDM vol. 3A, table 6-5).
X86_EXC_CONTRIBUTORY = frozenset((X86_EXC_DE, X86_EXC_TS, X86_EXC_NP, X86_EXC_SS, X86_EXC_GP))

# ---------------------------------------------------------------------------
# The page-fault error code (asm/processor.h; SDM vol. 3A, figure 4-12).
# ---------------------------------------------------------------------------

PFEC_page_present = 1 << 0     # 1: protection violation; 0: not-present page
PFEC_write_access = 1 << 1     # the access was a write
PFEC_user_mode = 1 << 2        # the access was made in user mode (CPL 3)
PFEC_reserved_bit = 1 << 3     # a reserved bit was set in some paging-structure entry
PFEC_insn_fetch = 1 << 4       # the access was an instruction fetch

# ---------------------------------------------------------------------------
# MSRs (asm/msr-index.h), EFER and control-register bits (asm/x86-defns.h).
# ---------------------------------------------------------------------------

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
# Page-table entry bits (asm/x86_64/page.h, asm/page.h; SDM vol. 3A, 4.5).
# ---------------------------------------------------------------------------

_PAGE_PRESENT = 1 << 0
_PAGE_RW = 1 << 1
_PAGE_USER = 1 << 2
_PAGE_PWT = 1 << 3
_PAGE_PCD = 1 << 4
_PAGE_ACCESSED = 1 << 5
_PAGE_DIRTY = 1 << 6
_PAGE_PSE = 1 << 7          # PS: page size (large page) at L3/L2
_PAGE_PAT = 1 << 7          # the same bit in an L1 entry
_PAGE_GLOBAL = 1 << 8
_PAGE_PAT_LARGE = 1 << 12   # PAT in a 2 MiB or 1 GiB leaf
_PAGE_NX = 1 << 63

#: Physical-address bits of an entry: 51:12.
PADDR_MASK = 0x000F_FFFF_FFFF_F000
#: The lab's physical-address width (CPUID 0x80000008 EAX[7:0]).
MAXPHYADDR = 52


def is_canonical(va: int) -> bool:
    """Whether ``va`` is canonical for 48-bit linear addresses (bits 63:47 all equal)."""
    top = va >> 47              # negative or above M64 falls outside both
    return top == 0 or top == 0x1FFFF


def canonical(va: int) -> int:
    """Sign-extend bit 47 (so ``0xffff8...`` addresses can be written as 48-bit numbers)."""
    va &= (1 << 48) - 1
    return va | (0xFFFF << 48) if va & (1 << 47) else va
