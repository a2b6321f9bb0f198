"""The x86-64 4-level page walk, on the real entry bits.

A linear address splits into four 9-bit table indexes and a 12-bit offset:

    63       48 47    39 38    30 29    21 20    12 11         0
    [ sign ext ][ L4 idx ][ L3 idx ][ L2 idx ][ L1 idx ][ offset ]

CR3 bits 51:12 hold the address of the L4 table (Xen's and Linux's names:
L4 = PML4, L3 = PDPT, L2 = page directory, L1 = page table). Each entry is 64
bits; the names below are Xen's ``_PAGE_*`` names, whose bit positions are the
SDM's (vol. 3A, section 4.5):

====  ======  ===================================================================
bit   name    meaning
====  ======  ===================================================================
0     P       present
1     RW      writes allowed (for supervisor writes only when CR0.WP is set)
2     US      user-mode accesses allowed
3     PWT     page-level write-through
4     PCD     page-level cache disable
5     A       accessed: set by the CPU when the entry is used
6     D       dirty: set by the CPU in the leaf when the page is written
7     PS      at L3: 1 GiB page; at L2: 2 MiB page; reserved at L4; PAT at L1
8     G       global: the TLB keeps the translation across CR3 writes
12    PAT     (in a 2 MiB or 1 GiB leaf) the PAT bit moves here
51:12         physical address of the next table or of the page
62:52         ignored (available to software)
63    NX      no execute (XD), when EFER.NXE is set; reserved otherwise
====  ======  ===================================================================

The lab's MAXPHYADDR is 52, so no address bits inside ``PADDR_MASK`` are
reserved; the reserved bits that remain are PS in an L4 entry, NX without
EFER.NXE, and the low address bits of a large page (bits 29:13 of a 1 GiB
leaf, bits 20:13 of a 2 MiB leaf).

:func:`walk` follows the SDM's rules (vol. 3A, 4.6 and 4.7) for permissions,
page-fault error codes and the accessed and dirty flags. Given a
``table_translate`` function it performs the two-dimensional walk of a guest
under EPT: every guest table address, and the final guest-physical address,
is itself translated, which is where the 24 memory references of a 4-level by
4-level walk come from.

A table that lies beyond the end of machine memory reads as all ones, as
a read that nothing on the bus answers does: the walk ends in a #PF with the
reserved-bit error code, never an exception (a forged entry cannot stop
the lab).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .ept import EptMisconfig, EptStep, EptViolation, ept_steps_text
from .memory import BusError
from .ept import EPT_W, EPT_X, EPTQ_GLA_FINAL, EPTQ_GLA_VALID

from .x86 import (PADDR_MASK, PFEC_insn_fetch, PFEC_page_present, PFEC_reserved_bit,
                  PFEC_user_mode, PFEC_write_access, X86_EXC_PF, _PAGE_ACCESSED, _PAGE_DIRTY,
                  _PAGE_GLOBAL, _PAGE_NX, _PAGE_PAT_LARGE, _PAGE_PCD, _PAGE_PRESENT,
                  _PAGE_PSE, _PAGE_PWT, _PAGE_RW, _PAGE_USER, is_canonical)

PAGE_4K = 1 << 12
PAGE_2M = 1 << 21
PAGE_1G = 1 << 30
LEVEL_SHIFT = {4: 39, 3: 30, 2: 21, 1: 12}
# The same, and each level's leaf size, indexed by level (the walk's inner loop).
_SHIFT_OF_LEVEL = (0, 12, 21, 30, 39)
_SIZE_OF_LEVEL = (0, PAGE_4K, PAGE_2M, PAGE_1G)
#: Reserved low address bits of a large-page leaf (the bit above PAT up to the page size).
_LARGE_RSVD = {3: 0x3FFF_E000, 2: 0x1F_E000}

_PFEC_NAMES = ((PFEC_page_present, "P"), (PFEC_write_access, "W"), (PFEC_user_mode, "U"), (PFEC_reserved_bit, "RSVD"),
               (PFEC_insn_fetch, "I"))



# -- describing entries ------------------------------------------------------------------
def is_leaf(entry: int, level: int) -> bool:
    """Whether an entry at ``level`` (assumed present) maps a page rather than a table."""
    return level == 1 or (level in (2, 3) and bool(entry & _PAGE_PSE))


def leaf_size(level: int) -> int:
    return {1: PAGE_4K, 2: PAGE_2M, 3: PAGE_1G}[level]


def flag_names(entry: int, level: int) -> list[str]:
    """The names of the set bits of an entry, in bit order, e.g. ``["P", "RW", "US", "A"]``.

    Bit 7 is named ``PS`` at L4, L3 and L2 and ``PAT`` at L1; bit 12 is named
    ``PAT`` in a large-page leaf.
    """
    out = []
    for bit, name in ((_PAGE_PRESENT, "P"), (_PAGE_RW, "RW"), (_PAGE_USER, "US"), (_PAGE_PWT, "PWT"),
                      (_PAGE_PCD, "PCD"), (_PAGE_ACCESSED, "A"), (_PAGE_DIRTY, "D")):
        if entry & bit:
            out.append(name)
    if entry & _PAGE_PSE:
        out.append("PAT" if level == 1 else "PS")
    if entry & _PAGE_GLOBAL:
        out.append("G")
    if level in (2, 3) and entry & _PAGE_PSE and entry & _PAGE_PAT_LARGE:
        out.append("PAT")
    if entry & _PAGE_NX:
        out.append("NX")
    return out


def entry_frame(entry: int, level: int) -> int:
    """The frame number an entry points at (a large page's first frame)."""
    addr = entry & PADDR_MASK
    if level in (2, 3) and entry & _PAGE_PSE:
        addr &= ~(leaf_size(level) - 1)
    return addr >> 12


def describe_entry(entry: int, level: int) -> str:
    """E.g. ``0x0000000000203067 P RW US A D -> frame 0x203``."""
    if not entry & _PAGE_PRESENT:
        return f"{entry:#018x} not present"
    names = " ".join(flag_names(entry, level))
    frame = entry_frame(entry, level)
    if level == 1:
        what = "frame"
    elif level in (2, 3) and entry & _PAGE_PSE:
        what = "2 MiB frame" if level == 2 else "1 GiB frame"
    else:
        what = "table frame"
    return f"{entry:#018x} {names} -> {what} {frame:#x}"


def decode_error_code(code: int) -> list[str]:
    """Names of the set bits of a #PF error code: ``["P", "W", "U", "RSVD", "I"]``."""
    return [name for bit, name in _PFEC_NAMES if code & bit]


def table_indexes(va: int) -> tuple[int, int, int, int, int]:
    """(L4, L3, L2, L1 index, page offset) of a linear address."""
    return ((va >> 39) & 511, (va >> 30) & 511, (va >> 21) & 511, (va >> 12) & 511, va & 0xFFF)


# -- results -------------------------------------------------------------------------------
@dataclass
class PageFault:
    """A #PF the walk would raise: error code, CR2 and a plain-English reason."""
    error_code: int
    cr2: int
    reason: str
    level: int | None = None     # the level where the walk stopped or the rule failed
    vector: int = X86_EXC_PF

    def error_code_names(self) -> list[str]:
        return decode_error_code(self.error_code)

    def describe(self) -> str:
        names = " ".join(self.error_code_names()) or "-"
        return f"#PF error code {self.error_code:#x} ({names}) CR2 {self.cr2:#x}: {self.reason}"

    def as_fault(self):
        """The CPU's exception object for this page fault."""
        from .faults import Fault
        return Fault(X86_EXC_PF, self.error_code, self.cr2, self.reason)


@dataclass
class WalkStep:
    """One paging-structure entry read during a walk."""
    level: int                      # 4, 3, 2, 1
    table: int                      # address of the table (guest-physical in a 2-D walk)
    index: int                      # 0..511
    entry_addr: int                 # table + index * 8 (guest-physical in a 2-D walk)
    entry: int                      # the value read, before A/D updates
    ept: list[EptStep] | None = None    # 2-D walks: the EPT walk that translated ``table``
    table_hpa: int = 0              # host-physical (machine) address of the table

    @property
    def flags(self) -> list[str]:
        # Named only when shown: a walk on the hot path never needs the names.
        return flag_names(self.entry, self.level)

    @property
    def entry_hpa(self) -> int:
        return self.table_hpa + self.index * 8

    @property
    def present(self) -> bool:
        return bool(self.entry & _PAGE_PRESENT)


@dataclass
class WalkResult:
    va: int
    pa: int | None                  # physical address the page tables give (guest-physical in 2-D)
    steps: list[WalkStep] = field(default_factory=list)
    fault: PageFault | None = None
    page_size: int = PAGE_4K
    writable: bool = False          # RW at every level
    user: bool = False              # US at every level
    nx: bool = False                # NX at some level
    global_: bool = False           # G in the leaf
    leaf_entry: int | None = None   # the leaf's value after this walk's A/D updates
    leaf_entry_addr: int | None = None
    final_ept: list[EptStep] | None = None
    mem_refs: int = 0
    noncanonical: bool = False      # the CPU raises #GP; no walk was made
    hpa: int | None = None          # machine address of the access (== pa without EPT)
    ept_exit: EptViolation | EptMisconfig | None = None   # a 2-D walk stopped by EPT
    host_page_size: int | None = None   # EPT leaf size of the final translation (2-D)
    ept_writable: bool = True       # the final EPT leaf allows writes
    ept_executable: bool = True     # the final EPT leaf allows fetches
    access: str = "r"
    cpl: int = 0
    two_dimensional: bool = False

    @property
    def ok(self) -> bool:
        return self.pa is not None and self.fault is None and self.ept_exit is None

    @property
    def dirty(self) -> bool:
        return self.leaf_entry is not None and bool(self.leaf_entry & _PAGE_DIRTY)

    @property
    def ept_violation(self) -> EptViolation | None:
        return self.ept_exit if isinstance(self.ept_exit, EptViolation) else None

    @property
    def ept_misconfig(self) -> EptMisconfig | None:
        return self.ept_exit if isinstance(self.ept_exit, EptMisconfig) else None


TableTranslate = Callable[..., "tuple[int, list[EptStep]]"]

_ACCESS_WORD = {"r": "read", "w": "write", "x": "instruction fetch"}


def _ept_leaf_perms(steps: list[EptStep]) -> tuple[int | None, bool, bool]:
    """(page size, writable, executable) of an EPT walk's leaf, from its steps."""
    if not steps or not all(isinstance(s, EptStep) for s in steps):
        return None, True, True
    w = all(s.entry & EPT_W for s in steps)
    x = all(s.entry & EPT_X for s in steps)
    return steps[-1].page_size, w, x


# -- the walk -------------------------------------------------------------------------------
def walk(mem, cr3: int, va: int, *, access: str = "r", cpl: int = 0, wp: bool = True,
         nxe: bool = True, set_ad: bool = True,
         table_translate: TableTranslate | None = None) -> WalkResult:
    """Translate ``va`` through the 4-level tables at CR3, as the CPU does.

    ``access`` is ``'r'``, ``'w'`` or ``'x'`` (instruction fetch); ``cpl`` 3 is
    user mode; ``wp`` is CR0.WP and ``nxe`` is EFER.NXE. When the walk
    succeeds every entry used gets its A flag, and on a write the leaf gets D;
    with ``set_ad`` false nothing is written (inspection).

    With ``table_translate`` (a 2-D walk under EPT) CR3 and the entries'
    addresses are guest-physical. ``table_translate(gpa, access)`` returns
    ``(hpa, ept_steps)`` or raises :class:`EptViolation`/:class:`EptMisconfig`;
    a callable with a true ``accepts_walk_context`` attribute (such as
    :class:`lab.hw.ept.EptTranslator`) is also given ``gla=va`` and
    ``is_table_access``. A guest table read is an ``'r'`` access. An EPT exit
    does not propagate: it stops the walk and is returned in ``ept_exit``
    with its qualification's linear-address bits (7, 8) filled in.
    """
    if access not in _ACCESS_WORD:
        raise ValueError(f"access must be 'r', 'w' or 'x', not {access!r}")
    res = WalkResult(va=va, pa=None, access=access, cpl=cpl,
                     two_dimensional=table_translate is not None)
    if not is_canonical(va):
        res.noncanonical = True
        return res

    user_mode = cpl == 3
    base_code = (PFEC_write_access if access == "w" else 0) | (PFEC_user_mode if user_mode else 0) | \
        (PFEC_insn_fetch if access == "x" and nxe else 0)
    context = bool(getattr(table_translate, "accepts_walk_context", False))

    def translate(gpa: int, acc: str, is_table: bool, guest_level: int | None):
        assert table_translate is not None
        try:
            if context:
                return table_translate(gpa, acc, gla=va, is_table_access=is_table)
            return table_translate(gpa, acc)
        except (EptViolation, EptMisconfig) as exc:
            if isinstance(exc, EptViolation):
                # The walk knows which linear address and which kind of access it was.
                exc.gla = va
                exc.qualification |= EPTQ_GLA_VALID
                if is_table:
                    exc.qualification &= ~EPTQ_GLA_FINAL
                else:
                    exc.qualification |= EPTQ_GLA_FINAL
            exc.guest_level = guest_level
            res.ept_exit = exc
            res.mem_refs += len(exc.steps)
            return None

    table = cr3 & PADDR_MASK
    writable = user = True
    nx = False
    level = 4
    steps = res.steps
    read_u64 = mem.read_u64
    refs = 0
    while True:
        index = (va >> _SHIFT_OF_LEVEL[level]) & 511
        entry_addr = table + index * 8
        ept_steps = None
        if table_translate is not None:
            res.mem_refs += refs
            refs = 0
            tr = translate(entry_addr, "r", True, level)
            if tr is None:
                return res
            entry_hpa, ept_steps = tr
            ept_steps = list(ept_steps)
            refs += len(ept_steps)
            table_hpa = entry_hpa - index * 8
        else:
            table_hpa = table
        refs += 1
        try:
            entry = read_u64(table_hpa + index * 8)
        except BusError:
            res.mem_refs += refs
            res.fault = PageFault(base_code | PFEC_page_present | PFEC_reserved_bit, va,
                                  f"L{level} table at {table_hpa:#x} is beyond the end of memory "
                                  f"(reads as all ones)", level)
            return res
        steps.append(WalkStep(level, table, index, entry_addr, entry, ept_steps, table_hpa))
        if not entry & _PAGE_PRESENT:
            res.mem_refs += refs
            res.fault = PageFault(base_code, va, f"not present at L{level} (entry {entry:#x})", level)
            return res
        # Only NX and PS can make a present entry's bits reserved (see _reserved_bits).
        rsvd = _reserved_bits(entry, level, nxe) if entry & (_PAGE_NX | _PAGE_PSE) else None
        if rsvd is not None:
            res.mem_refs += refs
            res.fault = PageFault(base_code | PFEC_page_present | PFEC_reserved_bit, va,
                                  f"reserved bit set in L{level} entry ({rsvd})", level)
            return res
        if not entry & _PAGE_RW:
            writable = False
        if not entry & _PAGE_USER:
            user = False
        if entry & _PAGE_NX:
            nx = True
        if level == 1 or (entry & _PAGE_PSE and level != 4):    # is_leaf(); PS at L4 is reserved
            break
        table = entry & PADDR_MASK
        level -= 1
    res.mem_refs += refs

    size = _SIZE_OF_LEVEL[level]
    res.page_size = size
    res.writable, res.user, res.nx = writable, user, nx
    res.global_ = bool(entry & _PAGE_GLOBAL)
    res.leaf_entry = entry
    res.leaf_entry_addr = steps[-1].entry_addr

    # Permissions (SDM 4.6), judged over the whole walk. The level named in the
    # reason is the highest one whose entry denies the access.
    reason = None
    lvl = None
    if user_mode and not user:
        lvl = next(s.level for s in steps if not s.entry & _PAGE_USER)
        reason = f"user access to a supervisor page (US clear at L{lvl})"
    elif access == "w" and not writable and (user_mode or wp):
        lvl = next(s.level for s in steps if not s.entry & _PAGE_RW)
        reason = f"write to a read-only page (RW clear at L{lvl})"
    elif access == "x" and nxe and nx:
        lvl = next(s.level for s in steps if s.entry & _PAGE_NX)
        reason = "instruction fetch from a no-execute page"
    if reason is not None:
        res.fault = PageFault(base_code | PFEC_page_present, va, reason, lvl)
        return res

    frame_base = entry & PADDR_MASK & ~(size - 1)
    pa = frame_base | (va & (size - 1))

    if table_translate is not None:
        tr = translate(pa, access, False, None)
        if tr is None:
            # The guest's walk succeeded; the fault is in the second stage.
            res.pa = None
            return res
        hpa, fin = tr
        fin = list(fin)
        res.final_ept = fin
        res.mem_refs += len(fin)
        res.host_page_size, res.ept_writable, res.ept_executable = _ept_leaf_perms(fin)
    else:
        hpa = pa

    if set_ad:
        last = len(steps) - 1
        for i, st in enumerate(steps):
            new = st.entry | _PAGE_ACCESSED
            if i == last and access == "w":
                new |= _PAGE_DIRTY
            if new != st.entry:
                mem.write_u64(st.table_hpa + st.index * 8, new)
            if i == last:
                res.leaf_entry = new
    res.pa = pa
    res.hpa = hpa
    return res


def _reserved_bits(entry: int, level: int, nxe: bool) -> str | None:
    """A description of the reserved bits set in a present entry, or None."""
    if entry & _PAGE_NX and not nxe:
        return "NX without EFER.NXE"
    if level == 4 and entry & _PAGE_PSE:
        return "PS"
    if level in _LARGE_RSVD and entry & _PAGE_PSE and entry & _LARGE_RSVD[level]:
        hi = 29 if level == 3 else 20
        return f"bits {hi}:13 of a {'1 GiB' if level == 3 else '2 MiB'} page"
    return None


# -- text --------------------------------------------------------------------------------------
def _size_name(size: int) -> str:
    return {PAGE_4K: "frame", PAGE_2M: "2 MiB page", PAGE_1G: "1 GiB page"}.get(size, f"{size:#x} page")


def walk_steps_text(result: WalkResult) -> list[str]:
    """Human lines for the page-table pane and the command line.

    ::

        L4 table 0x1000 [  0] = 0x0000000000002003 P RW -> table frame 0x2
        ...
        -> frame 0x5000 + 0x123 = 0x5123

    In a 2-D walk each table's EPT translation is shown indented above it.
    """
    lines: list[str] = []
    va = result.va
    if result.noncanonical:
        lines.append(f"{va:#x} is not canonical: the CPU raises #GP(0) without walking")
        return lines
    acc = _ACCESS_WORD.get(result.access, result.access)
    mode = "user" if result.cpl == 3 else "supervisor"
    i4, i3, i2, i1, off = table_indexes(va)
    lines.append(f"walk {va:#x} ({mode} {acc}): L4 {i4}, L3 {i3}, L2 {i2}, L1 {i1}, offset {off:#x}")
    two_d = result.two_dimensional
    for st in result.steps:
        if two_d:
            lines.append(f"  gPA {st.entry_addr:#x} through EPT:")
            lines.extend(ept_steps_text(st.ept or [], indent="    "))
            lines.append(f"    -> hPA {st.entry_hpa:#x}")
            where = f"gPA {st.table:#x} (hPA {st.table_hpa:#x})"
        else:
            where = f"{st.table:#x}"
        lines.append(f"L{st.level} table {where} [{st.index:3d}] = {describe_entry(st.entry, st.level)}")
    exc = result.ept_exit
    if exc is not None and exc.guest_level is not None:
        # The table address of the next level could not be translated.
        lines.append(f"  gPA {exc.gpa:#x} (L{exc.guest_level} table) through EPT:")
        lines.extend(ept_steps_text(exc, indent="    "))
        return lines
    if result.fault is not None:
        lines.append(result.fault.describe())
        return lines
    if result.leaf_entry is None:
        return lines
    size = result.page_size
    pa = (result.steps[-1].entry & PADDR_MASK & ~(size - 1)) | (va & (size - 1))
    base = pa & ~(size - 1)
    lines.append(f"-> {_size_name(size)} {base:#x} + {va & (size - 1):#x} = {pa:#x}")
    if two_d:
        lines.append(f"  gPA {pa:#x} through EPT:")
        if exc is not None:
            lines.extend(ept_steps_text(exc, indent="    "))
            return lines
        lines.extend(ept_steps_text(result.final_ept or [], indent="    "))
        if result.hpa is not None:
            lines.append(f"-> hPA {result.hpa:#x}")
    perms = ("RW" if result.writable else "RO") + (" user" if result.user else " supervisor") + \
        (" NX" if result.nx else "") + (" global" if result.global_ else "")
    lines.append(f"   {perms}; {result.mem_refs} memory references")
    return lines
