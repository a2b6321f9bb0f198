"""Arm VMSAv8-64 translation with the 4 KiB granule: stage 1 (VA -> IPA) and stage 2 (IPA -> PA).

Stage 1 belongs to the guest kernel (TTBR0/1_EL1, TCR_EL1, SCTLR_EL1.M);
stage 2 belongs to Xen (VTTBR_EL2, VTCR_EL2, HCR_EL2.VM). With both on, every
stage-1 table the walker reads is itself at an IPA, so it is translated
through stage 2 first: the 2-D walk, up to 24 memory references for a
4-level stage 1 over a 4-level stage 2, exactly as EPT does on x86.

Descriptor formats (DDI 0487 D8.3): bits 1:0 = 0b11 is a table (levels 0-2)
or a page (level 3), 0b01 a block (levels 1-2), anything else invalid.
Output address bits 47:12. Stage-1 leaves: AttrIndx 4:2, AP 7:6 (AP[1] =
EL0 may access, AP[2] = read-only), SH 9:8, AF 10, nG 11, PXN 53, UXN 54.
Stage-2 leaves: MemAttr 5:2, S2AP 7:6 (bit 6 read, bit 7 write), SH, AF,
XN 54. What the lab leaves out is in docs/isa-arm.md: hierarchical table
attributes (APTable, XNTable), hardware A/D management (an AF of 0 faults),
contiguous hints, and granules other than 4 KiB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..memory import MachineMemory
from .exceptions import FSC_ACCESS_FLAG, FSC_PERMISSION, FSC_TRANSLATION

PAGE = 4096
OA_MASK = ((1 << 48) - 1) & ~0xFFF
BLOCK_SIZE = {1: 1 << 30, 2: 1 << 21, 3: 1 << 12}

AF = 1 << 10
NG = 1 << 11
PXN = 1 << 53
UXN = 1 << 54          # XN at stage 2
AP_EL0 = 1 << 6        # stage 1 AP[1]; stage 2 S2AP[0] (read)
AP_RO = 1 << 7         # stage 1 AP[2]; stage 2 S2AP[1] (write)
S2_READ = 1 << 6
S2_WRITE = 1 << 7


@dataclass(frozen=True)
class TranslationFault:
    """Why a walk stopped: DFSC/IFSC kind and level, and at which stage."""
    stage: int                 # 1 or 2
    fsc: int                   # FSC_TRANSLATION, FSC_ACCESS_FLAG or FSC_PERMISSION
    level: int
    ipa: int | None = None     # for stage 2: the IPA that missed
    s1ptw: bool = False        # stage 2 fault on a stage-1 table read

    @property
    def code(self) -> int:
        return self.fsc | self.level

    def describe(self) -> str:
        kind = {FSC_TRANSLATION: "translation fault", FSC_ACCESS_FLAG: "access flag fault",
                FSC_PERMISSION: "permission fault"}[self.fsc]
        where = f" at IPA {self.ipa:#x}" if self.ipa is not None else ""
        ptw = " (reading a stage-1 table)" if self.s1ptw else ""
        return f"stage {self.stage} {kind}, level {self.level}{where}{ptw}"


@dataclass
class Step:
    """One descriptor read: which table, which index, what it held."""
    stage: int
    level: int
    table: int                  # address of the table (an IPA for stage 1 under stage 2, else a PA)
    index: int
    entry: int
    entry_pa: int               # where the descriptor really is in machine memory
    s2: "WalkResult | None" = None   # the stage-2 walk of this stage-1 table (2-D walks)


@dataclass
class WalkResult:
    va: int                     # the input address (a VA for stage 1, an IPA for stage 2)
    stage: int
    out: int | None = None      # the output address (IPA for stage 1, PA for stage 2)
    pa: int | None = None       # the final machine address (through stage 2 when it is on)
    steps: list[Step] = field(default_factory=list)
    fault: TranslationFault | None = None
    leaf: int = 0
    level: int = 3
    s2_final: "WalkResult | None" = None
    readable: bool = True
    writable: bool = True
    executable: bool = True
    el0: bool = True            # stage 1: EL0 may access
    global_: bool = True

    @property
    def ok(self) -> bool:
        return self.fault is None and self.pa is not None

    @property
    def mem_refs(self) -> int:
        """Descriptor reads made, counting the stage-2 walks of a 2-D walk."""
        n = len(self.steps)
        for st in self.steps:
            if st.s2 is not None:
                n += st.s2.mem_refs
        if self.s2_final is not None:
            n += self.s2_final.mem_refs
        return n


def _start_level(tsz: int) -> int:
    bits = 64 - tsz
    levels = -(-(bits - 12) // 9)
    return 4 - levels


def stage2_walk(mem: MachineMemory, vttbr: int, vtcr: int, ipa: int, access: str = "r") -> WalkResult:
    """IPA -> PA through Xen's stage-2 tables (VTTBR_EL2.BADDR, VTCR_EL2.T0SZ and SL0)."""
    res = WalkResult(va=ipa, stage=2)
    t0sz = vtcr & 0x3F
    sl0 = (vtcr >> 6) & 3
    level = {0: 2, 1: 1, 2: 0}.get(sl0, 1)
    if ipa >> (64 - t0sz):
        res.fault = TranslationFault(2, FSC_TRANSLATION, 0, ipa=ipa)
        return res
    table = vttbr & OA_MASK
    while True:
        shift = 12 + 9 * (3 - level)
        index = (ipa >> shift) & 0x1FF
        entry_pa = table + index * 8
        entry = _read_desc(mem, entry_pa)
        res.steps.append(Step(2, level, table, index, entry, entry_pa))
        kind = entry & 3
        if kind == 3 and level < 3:
            table = entry & OA_MASK
            level += 1
            continue
        if not ((kind == 3 and level == 3) or (kind == 1 and level in (1, 2))):
            res.fault = TranslationFault(2, FSC_TRANSLATION, level, ipa=ipa)
            return res
        break
    res.leaf, res.level = entry, level
    size = BLOCK_SIZE[level]
    res.readable = bool(entry & S2_READ)
    res.writable = bool(entry & S2_WRITE)
    res.executable = not entry & UXN
    if not entry & AF:
        res.fault = TranslationFault(2, FSC_ACCESS_FLAG, level, ipa=ipa)
        return res
    if (access == "w" and not res.writable) or (access in ("r", "x") and not res.readable) or \
            (access == "x" and not res.executable):
        res.fault = TranslationFault(2, FSC_PERMISSION, level, ipa=ipa)
        return res
    res.out = res.pa = (entry & OA_MASK & ~(size - 1)) | (ipa & (size - 1))
    if res.out >= mem.size:
        # A descriptor Xen wrote past the end of RAM: reads nothing (the lab faults it, never raises).
        res.fault = TranslationFault(2, FSC_TRANSLATION, level, ipa=ipa)
        res.out = res.pa = None
    return res


def _read_desc(mem: MachineMemory, pa: int) -> int:
    if pa + 8 > mem.size:
        return 0                       # no memory there: an invalid descriptor
    return mem.read_u64(pa)


@dataclass(frozen=True)
class Regime:
    """What the EL1&0 regime's walk needs from the system registers."""
    sctlr: int
    tcr: int
    ttbr0: int
    ttbr1: int
    stage2: bool = False
    vttbr: int = 0
    vtcr: int = 0


def stage1_walk(mem: MachineMemory, regime: Regime, va: int, access: str = "r", el: int = 1) -> WalkResult:
    """VA -> IPA -> PA for the EL1&0 regime; each table read goes through stage 2 when it is on."""
    res = WalkResult(va=va, stage=1)

    def s2(ipa: int, acc: str, ptw: bool) -> int | None:
        if not regime.stage2:
            return ipa if ipa < mem.size else None
        r = stage2_walk(mem, regime.vttbr, regime.vtcr, ipa, acc)
        if ptw:
            res.steps[-1].s2 = r if res.steps else None
        if not r.ok:
            f = r.fault
            assert f is not None
            res.fault = TranslationFault(2, f.fsc, f.level, ipa=ipa, s1ptw=ptw)
            if not ptw:
                res.s2_final = r
            return None
        if not ptw:
            res.s2_final = r
        return r.pa

    if not regime.sctlr & 1:                      # stage 1 off: the VA is the IPA
        res.out = va
        if va >> 48:
            res.fault = TranslationFault(1, FSC_TRANSLATION, 0)
            return res
        res.pa = s2(va, access, False)
        if res.s2_final is not None:
            res.readable, res.writable = res.s2_final.readable, res.s2_final.writable
            res.executable = res.s2_final.executable
        return res
    tcr = regime.tcr
    upper = va >> 63
    tsz = (tcr >> 16) & 0x3F if upper else tcr & 0x3F
    disabled = (tcr >> 23) & 1 if upper else (tcr >> 7) & 1
    bits = 64 - tsz
    top = va >> bits
    if disabled or top != (((1 << (64 - bits)) - 1) if upper else 0):
        res.fault = TranslationFault(1, FSC_TRANSLATION, 0)
        return res
    table_ipa = (regime.ttbr1 if upper else regime.ttbr0) & OA_MASK
    level = _start_level(tsz)
    while True:
        shift = 12 + 9 * (3 - level)
        index = (va >> shift) & 0x1FF
        entry_ipa = table_ipa + index * 8
        res.steps.append(Step(1, level, table_ipa, index, 0, 0))
        entry_pa = s2(entry_ipa, "r", True)
        if entry_pa is None:
            return res
        entry = _read_desc(mem, entry_pa)
        res.steps[-1].entry, res.steps[-1].entry_pa = entry, entry_pa
        kind = entry & 3
        if kind == 3 and level < 3:
            table_ipa = entry & OA_MASK
            level += 1
            continue
        if not ((kind == 3 and level == 3) or (kind == 1 and level in (1, 2))):
            res.fault = TranslationFault(1, FSC_TRANSLATION, level)
            return res
        break
    size = BLOCK_SIZE[level]
    res.leaf, res.level = entry, level
    res.el0 = bool(entry & AP_EL0)
    res.writable = not entry & AP_RO
    res.global_ = not entry & NG
    # EL0 fetches obey UXN, EL1 fetches PXN; EL1 never executes what EL0 may write (DDI 0487 D8.4.1.2).
    res.executable = not entry & UXN if el == 0 else not (entry & PXN or (res.el0 and res.writable))
    if not entry & AF:
        res.fault = TranslationFault(1, FSC_ACCESS_FLAG, level)
        return res
    if (el == 0 and not res.el0) or (access == "w" and not res.writable) or (access == "x" and not res.executable):
        res.fault = TranslationFault(1, FSC_PERMISSION, level)
        return res
    res.out = (entry & OA_MASK & ~(size - 1)) | (va & (size - 1))
    res.pa = s2(res.out, access, False)
    if res.s2_final is not None and res.s2_final.ok:
        res.writable = res.writable and res.s2_final.writable
        res.executable = res.executable and res.s2_final.executable
    return res


# ----------------------------------------------------------------- text for panes and commands
def describe_descriptor(entry: int, level: int, stage: int) -> str:
    kind = entry & 3
    if kind == 0 or (kind == 1 and level in (0, 3)):
        return f"{entry:#018x} invalid"
    if kind == 3 and level < 3:
        return f"{entry:#018x} table -> {entry & OA_MASK:#x}"
    what = "page" if level == 3 else "block"
    flags = []
    if stage == 1:
        flags.append("RO" if entry & AP_RO else "RW")
        flags.append("EL0" if entry & AP_EL0 else "EL1-only")
        flags += [n for bit, n in ((AF, "AF"), (NG, "nG"), (PXN, "PXN"), (UXN, "UXN")) if entry & bit]
        flags.append(f"AttrIndx {(entry >> 2) & 7}")
    else:
        flags.append("S2AP " + ("R" if entry & S2_READ else "-") + ("W" if entry & S2_WRITE else "-"))
        flags += [n for bit, n in ((AF, "AF"), (UXN, "XN")) if entry & bit]
        flags.append(f"MemAttr {(entry >> 2) & 0xF:#x}")
    return f"{entry:#018x} {what} {entry & OA_MASK & ~(BLOCK_SIZE[level] - 1):#x} {' '.join(flags)}"


def walk_text(res: WalkResult, indent: str = "") -> list[str]:
    """The walk level by level, each stage-1 table's stage-2 walk shown above it."""
    lines = []
    name = "VA" if res.stage == 1 else "IPA"
    lines.append(f"{indent}stage {res.stage}: {name} {res.va:#x}")
    for st in res.steps:
        if st.s2 is not None:
            lines.append(f"{indent}  table IPA {st.table + st.index * 8:#x} through stage 2:")
            lines.extend(walk_text(st.s2, indent + "    ")[1:])
        where = f"{st.table:#x}"
        lines.append(f"{indent}  L{st.level} table {where} [{st.index:3d}] = "
                     f"{describe_descriptor(st.entry, st.level, st.stage)}")
    if res.s2_final is not None and res.stage == 1:
        lines.append(f"{indent}  output IPA {res.out:#x} through stage 2:")
        lines.extend(walk_text(res.s2_final, indent + "    ")[1:])
    if res.fault is not None:
        lines.append(f"{indent}  -> {res.fault.describe()}")
    elif res.pa is not None:
        lines.append(f"{indent}  -> PA {res.pa:#x} ({res.mem_refs} descriptor reads)")
    return lines
