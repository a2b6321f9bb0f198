"""Intel EPT: the second stage of address translation for HVM and PVH guests.

With EPT on, every guest-physical address the guest uses -- the address of
each of its own page-table entries as well as the address its page tables
finally produce -- goes through a second, 4-level table that the hypervisor
owns (Xen's p2m). The entry format is Intel's (SDM vol. 3C, "EPT
Translation Mechanism"):

====  =======================================================================
bit   meaning
====  =======================================================================
0     R: reads allowed
1     W: writes allowed
2     X: instruction fetches allowed (supervisor-mode execute)
5:3   memory type, leaf entries only: UC 0, WC 1, WT 4, WP 5, WB 6
6     IPAT: ignore the guest's PAT memory type (leaf entries only)
7     PS: this entry maps a page (1 GiB at L3, 2 MiB at L2); reserved at L4
8     A: accessed (when EPTP bit 6 enables EPT A/D flags)
9     D: dirty (leaf entries only)
51:12 address of the next table or of the page
====  =======================================================================

An entry is present when any of R, W, X is set. A present entry that the
hardware cannot make sense of (W without R, a reserved memory type, reserved
bits set) is an *EPT misconfiguration* (VM exit 49); an access that the
entries do not allow, or that meets a not-present entry, is an *EPT
violation* (VM exit 48). Both stop the guest and hand the address to Xen.

The lab implements execute-only entries (X without R) as allowed, as on every
processor Xen supports with EPT, and does not model mode-based execute
control (bit 10) or sub-page permissions.
"""

from __future__ import annotations

from dataclasses import dataclass

from .memory import PAGE_SIZE

# -- entry bits ---------------------------------------------------------------
EPT_R = 1 << 0
EPT_W = 1 << 1
EPT_X = 1 << 2
EPT_RWX = EPT_R | EPT_W | EPT_X
EPT_MT_SHIFT = 3
EPT_MT_MASK = 7 << EPT_MT_SHIFT
EPT_IGNORE_PAT = 1 << 6
EPT_PS = 1 << 7
EPT_A = 1 << 8
EPT_D = 1 << 9
EPT_ADDR_MASK = 0x000F_FFFF_FFFF_F000

# -- memory types ---------------------------------------------------------------
MT_UC, MT_WC, MT_WT, MT_WP, MT_WB = 0, 1, 4, 5, 6
MT_NAMES = {MT_UC: "UC", MT_WC: "WC", MT_WT: "WT", MT_WP: "WP", MT_WB: "WB"}
#: Memory-type values the SDM reserves; one in a leaf is a misconfiguration.
MT_RESERVED = (2, 3, 7)

# -- EPTP -------------------------------------------------------------------------
EPTP_MT_MASK = 7
EPTP_WALK_SHIFT = 3
EPTP_WALK_MASK = 7 << EPTP_WALK_SHIFT
EPTP_AD = 1 << 6

# -- VM exits -----------------------------------------------------------------------
EXIT_REASON_EPT_VIOLATION = 48
EXIT_REASON_EPT_MISCONFIG = 49

# -- exit qualification for EPT violations (SDM vol. 3C, table 28-7) -----------------
EPTQ_READ = 1 << 0          # the access was a data read
EPTQ_WRITE = 1 << 1         # the access was a data write
EPTQ_FETCH = 1 << 2         # the access was an instruction fetch
EPTQ_READABLE = 1 << 3      # AND of R over the entries walked
EPTQ_WRITABLE = 1 << 4      # AND of W over the entries walked
EPTQ_EXECUTABLE = 1 << 5    # AND of X over the entries walked
EPTQ_GLA_VALID = 1 << 7     # the guest linear address field is valid
EPTQ_GLA_FINAL = 1 << 8     # (with bit 7) the access was to the translated linear
                            # address, not to a guest paging-structure entry

_QUAL_NAMES = (
    (EPTQ_READ, "data read"),
    (EPTQ_WRITE, "data write"),
    (EPTQ_FETCH, "instruction fetch"),
    (EPTQ_READABLE, "gpa readable"),
    (EPTQ_WRITABLE, "gpa writable"),
    (EPTQ_EXECUTABLE, "gpa executable"),
    (EPTQ_GLA_VALID, "guest linear address valid"),
)

_SHIFT_OF_LEVEL = (0, 12, 21, 30, 39)
_LEVEL_NAME = {4: "PML4", 3: "PDPT", 2: "PD", 1: "PT"}
_ACCESS_BIT = {"r": EPTQ_READ, "w": EPTQ_WRITE, "x": EPTQ_FETCH}
_ACCESS_WORD = {"r": "read", "w": "write", "x": "instruction fetch"}

PAGE_2M = 1 << 21
PAGE_1G = 1 << 30
_SIZE_OF_LEVEL = (0, PAGE_SIZE, PAGE_2M, PAGE_1G)


# -- EPTP ---------------------------------------------------------------------------
def make_eptp(pml4_hpa: int, ad: bool = True) -> int:
    """An EPT pointer: write-back, 4-level walk, A/D flags as asked."""
    return (pml4_hpa & EPT_ADDR_MASK) | MT_WB | ((4 - 1) << EPTP_WALK_SHIFT) | (EPTP_AD if ad else 0)


def eptp_root(eptp: int) -> int:
    """The host-physical address of the PML4 that an EPTP names."""
    return eptp & EPT_ADDR_MASK


def eptp_ad_enabled(eptp: int) -> bool:
    return bool(eptp & EPTP_AD)


def describe_eptp(eptp: int) -> str:
    mt = eptp & EPTP_MT_MASK
    levels = ((eptp & EPTP_WALK_MASK) >> EPTP_WALK_SHIFT) + 1
    ad = "A/D on" if eptp & EPTP_AD else "A/D off"
    return (f"EPTP {eptp:#x}: PML4 at {eptp_root(eptp):#x}, {levels}-level walk, "
            f"{MT_NAMES.get(mt, f'type {mt}')}, {ad}")


# -- entries --------------------------------------------------------------------------
def is_leaf(entry: int, level: int) -> bool:
    """Whether an EPT entry at ``level`` maps a page rather than a table."""
    return level == 1 or (level in (2, 3) and bool(entry & EPT_PS))


def flag_names(entry: int, level: int) -> list[str]:
    """Names of the set bits of an EPT entry, e.g. ``["R", "W", "X", "WB", "PS"]``."""
    out = []
    if entry & EPT_R:
        out.append("R")
    if entry & EPT_W:
        out.append("W")
    if entry & EPT_X:
        out.append("X")
    if is_leaf(entry, level):
        if entry & EPT_RWX:
            mt = (entry & EPT_MT_MASK) >> EPT_MT_SHIFT
            out.append(MT_NAMES.get(mt, f"MT{mt}"))
        if entry & EPT_IGNORE_PAT:
            out.append("IPAT")
    if entry & EPT_PS:
        out.append("PS")
    if entry & EPT_A:
        out.append("A")
    if entry & EPT_D and is_leaf(entry, level):
        out.append("D")
    return out


def describe_entry(entry: int, level: int) -> str:
    """``0x0000000000203037 R W X WB -> frame 0x203`` (or a next-table frame)."""
    if not entry & EPT_RWX:
        return f"{entry:#018x} not present"
    names = " ".join(flag_names(entry, level))
    if is_leaf(entry, level):
        size = {1: PAGE_SIZE, 2: PAGE_2M, 3: PAGE_1G}[level]
        frame = (entry & EPT_ADDR_MASK & ~(size - 1)) >> 12
        what = {1: "frame", 2: "2 MiB frame", 3: "1 GiB frame"}[level]
    else:
        frame = (entry & EPT_ADDR_MASK) >> 12
        what = "table frame"
    return f"{entry:#018x} {names} -> {what} {frame:#x}"


def _reserved_problem(entry: int, level: int) -> str | None:
    """Why a present entry is a misconfiguration, or None."""
    if entry & EPT_W and not entry & EPT_R:
        return "write permission without read permission"
    if level == 4 and entry & EPT_PS:
        return "bit 7 (PS) is reserved in a PML4 entry"
    if is_leaf(entry, level):
        mt = (entry & EPT_MT_MASK) >> EPT_MT_SHIFT
        if mt in MT_RESERVED:
            return f"reserved memory type {mt}"
        if level == 3 and entry & 0x3FFF_F000:
            return "bits 29:12 of a 1 GiB page entry must be zero"
        if level == 2 and entry & 0x1F_F000:
            return "bits 20:12 of a 2 MiB page entry must be zero"
    elif entry & (EPT_MT_MASK | EPT_IGNORE_PAT):
        return "bits 6:3 are reserved in an entry that references a table"
    return None


# -- results and exits -------------------------------------------------------------------
@dataclass
class EptStep:
    """One EPT entry read during a walk."""
    level: int              # 4 (PML4) .. 1 (PT)
    table: int              # host-physical address of the table
    index: int              # 0..511
    entry_addr: int         # host-physical address of the entry
    entry: int              # value as read, before A/D updates

    @property
    def flags(self) -> list[str]:
        # Named only when shown: a walk on the hot path never needs the names.
        return flag_names(self.entry, self.level)

    @property
    def present(self) -> bool:
        return bool(self.entry & EPT_RWX)

    @property
    def leaf(self) -> bool:
        return self.present and is_leaf(self.entry, self.level)

    @property
    def page_size(self) -> int | None:
        if not self.leaf:
            return None
        return {1: PAGE_SIZE, 2: PAGE_2M, 3: PAGE_1G}[self.level]


class EptViolation(Exception):
    """VM exit 48: the EPT entries do not allow the access (or are not present)."""

    exit_reason = EXIT_REASON_EPT_VIOLATION
    name = "EPT_VIOLATION"

    def __init__(self, gpa: int, gla: int | None, qualification: int, reason: str,
                 steps: list[EptStep] | None = None) -> None:
        super().__init__(reason)
        self.gpa = gpa
        self.gla = gla
        self.qualification = qualification
        self.reason = reason
        #: The partial EPT walk that ended in the violation.
        self.steps = list(steps or [])
        #: Set by a 2-D walk: the guest paging level whose table address could
        #: not be translated, or None when it was the final guest-physical address.
        self.guest_level: int | None = None

    def describe(self) -> str:
        gla = f" gla {self.gla:#x}" if self.gla is not None else ""
        return (f"EPT_VIOLATION (48) gpa {self.gpa:#x}{gla} qualification {self.qualification:#x} "
                f"[{', '.join(decode_qualification(self.qualification))}]: {self.reason}")

    def __repr__(self) -> str:
        return f"EptViolation({self.describe()})"


class EptMisconfig(Exception):
    """VM exit 49: a present EPT entry that the hardware cannot use."""

    exit_reason = EXIT_REASON_EPT_MISCONFIG
    name = "EPT_MISCONFIG"

    def __init__(self, gpa: int, reason: str, level: int, entry: int,
                 steps: list[EptStep] | None = None) -> None:
        super().__init__(reason)
        self.gpa = gpa
        self.reason = reason
        self.level = level
        self.entry = entry
        self.steps = list(steps or [])
        self.guest_level: int | None = None
        #: EPT misconfigurations carry no exit qualification.
        self.qualification = 0

    def describe(self) -> str:
        return f"EPT_MISCONFIG (49) gpa {self.gpa:#x}: {self.reason}"

    def __repr__(self) -> str:
        return f"EptMisconfig({self.describe()})"


def decode_qualification(q: int) -> list[str]:
    """The meaning of each set bit of an EPT-violation exit qualification."""
    out = [name for bit, name in _QUAL_NAMES if q & bit]
    if q & EPTQ_GLA_VALID:
        out.append("access to the translated linear address" if q & EPTQ_GLA_FINAL
                   else "access to a guest paging-structure entry")
    return out


@dataclass
class EptResult:
    gpa: int
    hpa: int | None
    steps: list[EptStep]
    violation: EptViolation | None = None
    misconfig: EptMisconfig | None = None
    mem_refs: int = 0
    page_size: int | None = None        # size of the page the leaf maps
    readable: bool = False              # AND of R over the entries walked
    writable: bool = False
    executable: bool = False
    memory_type: int | None = None

    @property
    def ok(self) -> bool:
        return self.hpa is not None

    @property
    def exit(self) -> EptViolation | EptMisconfig | None:
        return self.violation or self.misconfig

    def perms(self) -> str:
        return ("r" if self.readable else "-") + ("w" if self.writable else "-") + \
            ("x" if self.executable else "-")


# -- the walk -----------------------------------------------------------------------------
def ept_walk(mem, eptp: int, gpa: int, access: str, *, gla: int | None = None,
             is_table_access: bool = False, set_ad: bool = True) -> EptResult:
    """Translate ``gpa`` through the EPT tables named by ``eptp``.

    ``access`` is ``'r'``, ``'w'`` or ``'x'``. ``gla`` is the guest linear
    address behind the access, when there is one; ``is_table_access`` says the
    access reads a guest paging-structure entry (with EPT A/D enabled such
    accesses count as writes, as the SDM specifies, so they need W and set D).
    Nothing is raised: the result carries the violation or misconfiguration.
    With ``set_ad`` false (inspection) nothing in memory changes.
    """
    qual = _ACCESS_BIT.get(access)
    if qual is None:
        raise ValueError(f"access must be 'r', 'w' or 'x', not {access!r}")
    ad = bool(eptp & EPTP_AD)
    as_write = access == "w" or (is_table_access and ad)
    if is_table_access and ad:
        qual |= EPTQ_WRITE
    if gla is not None:
        qual |= EPTQ_GLA_VALID
        if not is_table_access:
            qual |= EPTQ_GLA_FINAL

    steps: list[EptStep] = []
    table = eptp & EPT_ADDR_MASK                # eptp_root()
    rwx = EPT_RWX                               # the AND of R, W and X over the entries
    level = 4
    read_u64 = mem.read_u64
    while True:
        index = (gpa >> _SHIFT_OF_LEVEL[level]) & 511
        entry_addr = table + index * 8
        entry = read_u64(entry_addr)
        steps.append(EptStep(level, table, index, entry_addr, entry))
        rwx &= entry
        if not entry & EPT_RWX:
            reason = (f"EPT {_what(access, is_table_access, ad)} of gpa {gpa:#x}: not present at EPT L{level} "
                      f"(entry {entry:#x})")
            # Bits 5:3 (the AND of R/W/X over the entries) are 0: this entry has none.
            v = EptViolation(gpa, gla, qual, reason, steps)
            return EptResult(gpa, None, steps, violation=v, mem_refs=len(steps))
        # Only W without R, or bits 7:3 (PS, IPAT, the memory type) can make an entry bad.
        problem = _reserved_problem(entry, level) if (entry & 3) == EPT_W or entry & 0xF8 else None
        if problem is not None:
            m = EptMisconfig(gpa, f"EPT L{level} entry {entry:#x}: {problem}", level, entry, steps)
            return EptResult(gpa, None, steps, misconfig=m, mem_refs=len(steps))
        if level == 1 or (entry & EPT_PS and level != 4):    # is_leaf(); PS at L4 is a misconfiguration
            break
        table = entry & EPT_ADDR_MASK
        level -= 1

    r, w, x = bool(rwx & EPT_R), bool(rwx & EPT_W), bool(rwx & EPT_X)
    size = _SIZE_OF_LEVEL[level]
    result = EptResult(gpa, None, steps, mem_refs=len(steps), page_size=size,
                       readable=r, writable=w, executable=x,
                       memory_type=(entry & EPT_MT_MASK) >> EPT_MT_SHIFT)
    missing = None
    if access == "x" and not x:
        missing = "X"
    elif access == "r" and not r:
        missing = "R"
    if as_write and not w and missing is None:
        missing = "W"
    if missing is not None:
        perm_bits = (EPTQ_READABLE if r else 0) | (EPTQ_WRITABLE if w else 0) | (EPTQ_EXECUTABLE if x else 0)
        reason = (f"EPT {_what(access, is_table_access, ad)} of gpa {gpa:#x}: {missing} clear "
                  f"(entries allow {result.perms()})")
        result.violation = EptViolation(gpa, gla, qual | perm_bits, reason, steps)
        return result

    if set_ad and ad:
        last = len(steps) - 1
        for i, st in enumerate(steps):
            new = st.entry | EPT_A
            if i == last and as_write:
                new |= EPT_D
            if new != st.entry:
                mem.write_u64(st.entry_addr, new)
    result.hpa = (entry & EPT_ADDR_MASK & ~(size - 1)) | (gpa & (size - 1))
    return result


def _what(access: str, is_table_access: bool, ad: bool) -> str:
    """How an EPT exit's reason names the access (built only when there is an exit)."""
    if is_table_access:
        return "guest page-table " + ("access (a write, as EPT A/D is on)" if ad else "read")
    return _ACCESS_WORD[access]


class EptTranslator:
    """A ``table_translate`` callable for :func:`lab.hw.paging.walk`.

    Calling it with ``(gpa, access)`` returns ``(hpa, steps)`` or raises the
    EPT exit. It also accepts the walk's context (``gla``,
    ``is_table_access``), which :func:`~lab.hw.paging.walk` passes because the
    object advertises ``accepts_walk_context``; that is what makes the exit
    qualification's bits 7 and 8 and the A/D-as-write rule exact.
    """

    accepts_walk_context = True

    def __init__(self, mem, eptp: int, *, set_ad: bool = True) -> None:
        self.mem = mem
        self.eptp = eptp
        self.set_ad = set_ad
        self.last: EptResult | None = None

    def __call__(self, gpa: int, access: str, *, gla: int | None = None,
                 is_table_access: bool = False) -> tuple[int, list[EptStep]]:
        res = ept_walk(self.mem, self.eptp, gpa, access, gla=gla,
                       is_table_access=is_table_access, set_ad=self.set_ad)
        self.last = res
        if res.exit is not None:
            raise res.exit
        assert res.hpa is not None
        return res.hpa, res.steps


# -- text ------------------------------------------------------------------------------------
def ept_step_line(st: EptStep) -> str:
    name = _LEVEL_NAME[st.level]
    return f"EPT L{st.level} {name:<4} {st.table:#x} [{st.index:3d}] = {describe_entry(st.entry, st.level)}"


def ept_steps_text(result_or_steps, indent: str = "") -> list[str]:
    """Human lines for an EPT walk.

    Accepts an :class:`EptResult`, an :class:`EptViolation`/:class:`EptMisconfig`
    (its partial walk) or a plain list of :class:`EptStep`.
    """
    lines: list[str] = []
    if isinstance(result_or_steps, EptResult):
        res = result_or_steps
        lines.extend(indent + ept_step_line(st) for st in res.steps)
        if res.exit is not None:
            lines.append(indent + res.exit.describe())
        elif res.hpa is not None:
            size = res.page_size or PAGE_SIZE
            base = res.hpa & ~(size - 1)
            lines.append(indent + f"-> host frame {base:#x} + {res.gpa & (size - 1):#x} = hPA {res.hpa:#x}"
                         f" ({res.perms()})")
        return lines
    if isinstance(result_or_steps, (EptViolation, EptMisconfig)):
        exc = result_or_steps
        lines.extend(indent + ept_step_line(st) for st in exc.steps)
        lines.append(indent + exc.describe())
        return lines
    lines.extend(indent + ept_step_line(st) for st in result_or_steps)
    return lines
