"""The Arm profile of the teaching ISA: a subset of AArch64 (A64), in Arm's own encodings.

Unlike the x86 profile, whose 16-byte encoding is the lab's own, every
instruction here is the 32-bit word a real Armv8-A core decodes: a hex dump
of an Arm guest reads exactly as ``objdump -d`` would show it on a real
machine (``hvc #0xea1`` is ``d401d422``). The subset is what an Arm kernel
needs to run under Xen and what the lessons show: data processing, loads and
stores, branches, exceptions (``svc``, ``hvc``, ``smc``, ``brk``, ``eret``),
system registers (``msr``/``mrs``), ``wfi``, barriers and TLB maintenance.
Field layouts follow the Arm Architecture Reference Manual (DDI 0487),
section C4 "A64 Instruction Set Encoding".

An :class:`A64` is the decoded form; :func:`encode` and :func:`decode` are
exact inverses on every valid word, and :func:`disassemble` prints the text
the assembler reads back.
"""

from __future__ import annotations

from dataclasses import dataclass

from .bits import M64
from .a64_sysregs import SYSREG_BY_ENCODING, SysReg

INSN_SIZE = 4
ZR = 31          # register number 31: the zero register (xzr/wzr) or sp, by instruction

COND_NAMES = ("eq", "ne", "cs", "cc", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le", "al", "nv")
COND_ALIASES = {"hs": 2, "lo": 3}
SHIFT_NAMES = ("lsl", "lsr", "asr", "ror")


class A64DecodeError(Exception):
    """The word is not an instruction of the subset (the CPU takes an Undefined exception)."""


@dataclass(frozen=True, slots=True)
class A64:
    """One decoded instruction. Unused fields keep their defaults.

    ``op`` names the instruction class as the assembler spells it (``add``,
    ``ldr``, ``b.cond`` ...); ``sf`` is True for the 64-bit (X register)
    form. ``mode`` for loads and stores is ``uoff`` (unsigned scaled offset),
    ``unscaled``, ``pre`` or ``post`` (and ``off`` for pairs).
    """
    op: str
    sf: bool = True
    rd: int = 0
    rn: int = 0
    rm: int = 0
    ra: int = 0
    imm: int = 0
    shift: int = 0          # shift type (lsl/lsr/asr/ror) or movz's hw, add's sh
    amount: int = 0         # shift amount (shifted-register forms)
    cond: int = 0
    size: int = 8           # bytes moved by a load or store
    mode: str = ""
    sysreg: int = 0         # (op0, op1, CRn, CRm, op2) packed as in the MSR/MRS word, bits 19-5 >> 5
    immr: int = 0
    imms: int = 0
    n: int = 0


def _bits(word: int, lo: int, width: int) -> int:
    return (word >> lo) & ((1 << width) - 1)


def _sext(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


# ----------------------------------------------------------------- bitmask immediates
def decode_bit_masks(n: int, imms: int, immr: int, sf: bool) -> int | None:
    """The value a logical-immediate field encodes (DecodeBitMasks, DDI 0487 J1), or None if reserved."""
    combined = (n << 6) | (~imms & 0x3F)
    if combined == 0:
        return None
    length = combined.bit_length() - 1
    if length < 1 or (not sf and n):
        return None
    esize = 1 << length
    levels = esize - 1
    s, r = imms & levels, immr & levels
    if s == levels:
        return None
    welem = (1 << (s + 1)) - 1
    elem = ((welem >> r) | (welem << (esize - r))) & ((1 << esize) - 1)
    width = 64 if sf else 32
    out = 0
    for i in range(0, width, esize):
        out |= elem << i
    return out


def encode_bit_masks(value: int, sf: bool) -> tuple[int, int, int] | None:
    """(N, immr, imms) for ``value`` as a logical immediate, or None if it has no encoding."""
    width = 64 if sf else 32
    value &= (1 << width) - 1
    if value == 0 or value == (1 << width) - 1:
        return None
    esize = width
    while esize > 2:                       # the smallest repeating element
        half = esize // 2
        mask = (1 << half) - 1
        if (value & mask) != (value >> half) & mask:
            break
        esize = half
    elem = value & ((1 << esize) - 1)
    ones = bin(elem).count("1")
    # A rotation of a run of `ones` ones: find r with elem == ROR(run, r).
    run = (1 << ones) - 1
    for r in range(esize):
        rotated = ((run >> r) | (run << (esize - r))) & ((1 << esize) - 1)
        if rotated == elem:
            n = 1 if esize == 64 else 0
            imms = ((~(esize - 1) << 1) & 0x3F) | (ones - 1)
            return n, r, imms & 0x3F
    return None


# ----------------------------------------------------------------- the table
# Fixed words and simple classes: (op, mask, match).
_FIXED = {
    "nop": 0xD503201F, "yield": 0xD503203F, "wfe": 0xD503205F, "wfi": 0xD503207F,
    "isb": 0xD5033FDF, "dsb": 0xD5033F9F, "dmb": 0xD5033FBF, "eret": 0xD69F03E0,
}
_FIXED_BY_WORD = {v: k for k, v in _FIXED.items()}
_EXCEPTIONS = {"svc": 0xD4000001, "hvc": 0xD4000002, "smc": 0xD4000003, "brk": 0xD4200000}
_BRANCH_REG = {"br": 0xD61F0000, "blr": 0xD63F0000, "ret": 0xD65F0000}
_ADDSUB = ("add", "adds", "sub", "subs")
_LOGIC = ("and", "orr", "eor", "ands")
_MOVE_WIDE = {"movn": 0, "movz": 2, "movk": 3}
_SHIFTV = {"lslv": 0b1000, "lsrv": 0b1001, "asrv": 0b1010, "udiv": 0b0010, "sdiv": 0b0011}
_SHIFTV_BY_CODE = {v: k for k, v in _SHIFTV.items()}
#: TLB maintenance (SYS #op1, C8, CRm, #op2): the operations the lessons use.
TLBI_OPS = {
    "vmalle1": (0, 7, 0, False), "vae1": (0, 7, 1, True), "aside1": (0, 7, 2, True), "vaae1": (0, 7, 3, True),
    "vmalle1is": (0, 3, 0, False), "alle2": (4, 7, 0, False), "alle1": (4, 7, 4, False),
    "vmalls12e1": (4, 7, 6, False), "ipas2e1": (4, 4, 1, True),
}
_TLBI_BY_FIELDS = {(op1, crm, op2): name for name, (op1, crm, op2, _) in TLBI_OPS.items()}
_LDST_SIZE = {1: 0, 2: 1, 4: 2, 8: 3}


def encode(i: A64) -> int:
    """The 32-bit word for ``i`` (ValueError if a field does not fit)."""
    sf = int(i.sf) << 31
    op = i.op
    if op in _FIXED:
        return _FIXED[op]
    if op in _EXCEPTIONS:
        _check(0 <= i.imm < 1 << 16, "the immediate must fit in 16 bits")
        return _EXCEPTIONS[op] | (i.imm << 5)
    if op in _BRANCH_REG:
        return _BRANCH_REG[op] | (i.rn << 5)
    if op in _MOVE_WIDE:
        _check(0 <= i.imm < 1 << 16, "the immediate must fit in 16 bits")
        _check(i.shift < (4 if i.sf else 2), "the shift must be lsl 0, 16, 32 or 48 (0 or 16 for a W register)")
        return sf | (_MOVE_WIDE[op] << 29) | (0b100101 << 23) | (i.shift << 21) | (i.imm << 5) | i.rd
    if op in _ADDSUB and i.mode == "imm":
        _check(0 <= i.imm < 1 << 12, "the immediate must fit in 12 bits (optionally lsl 12)")
        return sf | (_ADDSUB.index(op) << 29) | (0b100010 << 23) | (i.shift << 22) | (i.imm << 10) | (i.rn << 5) | i.rd
    if op in _ADDSUB:
        _check(i.shift < 3 and 0 <= i.amount < (64 if i.sf else 32), "bad shift")
        return sf | (_ADDSUB.index(op) << 29) | (0b01011 << 24) | (i.shift << 22) | (i.rm << 16) | \
            (i.amount << 10) | (i.rn << 5) | i.rd
    if op in _LOGIC and i.mode == "imm":
        return sf | (_LOGIC.index(op) << 29) | (0b100100 << 23) | (i.n << 22) | (i.immr << 16) | \
            (i.imms << 10) | (i.rn << 5) | i.rd
    if op in _LOGIC:
        _check(0 <= i.amount < (64 if i.sf else 32), "bad shift")
        return sf | (_LOGIC.index(op) << 29) | (0b01010 << 24) | (i.shift << 22) | (i.rm << 16) | \
            (i.amount << 10) | (i.rn << 5) | i.rd
    if op in ("madd", "msub"):
        return sf | (0b11011 << 24) | (i.rm << 16) | (int(op == "msub") << 15) | (i.ra << 10) | (i.rn << 5) | i.rd
    if op in _SHIFTV:
        return sf | (0b11010110 << 21) | (i.rm << 16) | (_SHIFTV[op] << 10) | (i.rn << 5) | i.rd
    if op in ("sbfm", "ubfm"):
        opc = 0 if op == "sbfm" else 2
        return sf | (opc << 29) | (0b100110 << 23) | (int(i.sf) << 22) | (i.immr << 16) | (i.imms << 10) | \
            (i.rn << 5) | i.rd
    if op in ("csel", "csinc"):
        return sf | (0b11010100 << 21) | (i.rm << 16) | (i.cond << 12) | (int(op == "csinc") << 10) | \
            (i.rn << 5) | i.rd
    if op in ("b", "bl"):
        _check(i.imm % 4 == 0 and -(1 << 27) <= i.imm < 1 << 27, "the branch target is out of range (+-128 MiB)")
        return (0x94000000 if op == "bl" else 0x14000000) | ((i.imm >> 2) & 0x3FFFFFF)
    if op == "b.cond":
        _check(i.imm % 4 == 0 and -(1 << 20) <= i.imm < 1 << 20, "the branch target is out of range (+-1 MiB)")
        return 0x54000000 | (((i.imm >> 2) & 0x7FFFF) << 5) | i.cond
    if op in ("cbz", "cbnz"):
        _check(i.imm % 4 == 0 and -(1 << 20) <= i.imm < 1 << 20, "the branch target is out of range (+-1 MiB)")
        return sf | 0x34000000 | (int(op == "cbnz") << 24) | (((i.imm >> 2) & 0x7FFFF) << 5) | i.rd
    if op in ("adr", "adrp"):
        imm = i.imm >> 12 if op == "adrp" else i.imm
        _check(-(1 << 20) <= imm < 1 << 20, "the address is out of range")
        return (int(op == "adrp") << 31) | ((imm & 3) << 29) | 0x10000000 | (((imm >> 2) & 0x7FFFF) << 5) | i.rd
    if op in ("msr", "mrs"):
        return 0xD5100000 | (int(op == "mrs") << 21) | (i.sysreg << 5) | i.rd
    if op in ("msr daifset", "msr daifclr"):
        _check(0 <= i.imm < 16, "the immediate must be 0-15")
        return 0xD50340DF | (i.imm << 8) | (int(op == "msr daifclr") << 5)
    if op == "tlbi":
        op1, crm, op2 = i.sysreg >> 7, (i.sysreg >> 3) & 0xF, i.sysreg & 7
        return 0xD5080000 | (op1 << 16) | (8 << 12) | (crm << 8) | (op2 << 5) | i.rd
    if op in ("ldr", "str"):
        load = int(op == "ldr")
        sz = _LDST_SIZE[i.size]
        if i.mode == "uoff":
            _check(i.imm % i.size == 0 and 0 <= i.imm // i.size < 1 << 12,
                   f"the offset must be a multiple of {i.size} from 0 to {4095 * i.size}")
            return (sz << 30) | 0x39000000 | (load << 22) | ((i.imm // i.size) << 10) | (i.rn << 5) | i.rd
        _check(-256 <= i.imm < 256, "the offset must be from -256 to 255")
        kind = {"unscaled": 0, "post": 1, "pre": 3}[i.mode]
        return (sz << 30) | 0x38000000 | (load << 22) | ((i.imm & 0x1FF) << 12) | (kind << 10) | (i.rn << 5) | i.rd
    if op in ("ldp", "stp"):
        _check(i.imm % 8 == 0 and -512 <= i.imm < 512, "the offset must be a multiple of 8 from -512 to 504")
        kind = {"post": 1, "off": 2, "pre": 3}[i.mode]
        return 0xA8000000 | (kind << 23) | (int(op == "ldp") << 22) | (((i.imm // 8) & 0x7F) << 15) | \
            (i.ra << 10) | (i.rn << 5) | i.rd
    raise ValueError(f"cannot encode {op}")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def decode(word: int) -> A64:
    """The instruction ``word`` encodes (A64DecodeError if it is outside the subset)."""
    word &= 0xFFFFFFFF
    if word in _FIXED_BY_WORD:
        return A64(_FIXED_BY_WORD[word])
    sf = bool(word >> 31)
    rd, rn, rm = word & 31, (word >> 5) & 31, (word >> 16) & 31
    for op, base in _EXCEPTIONS.items():
        if word & 0xFFE0001F == base:
            return A64(op, imm=_bits(word, 5, 16))
    for op, base in _BRANCH_REG.items():
        if word & 0xFFFFFC1F == base:
            return A64(op, rn=rn)
    if _bits(word, 23, 6) == 0b100101:
        opc = _bits(word, 29, 2)
        names = {v: k for k, v in _MOVE_WIDE.items()}
        hw = _bits(word, 21, 2)
        if opc in names and (sf or hw < 2):
            return A64(names[opc], sf=sf, rd=rd, imm=_bits(word, 5, 16), shift=hw)
    if _bits(word, 23, 6) == 0b100010:
        return A64(_ADDSUB[_bits(word, 29, 2)], sf=sf, rd=rd, rn=rn, imm=_bits(word, 10, 12),
                   shift=_bits(word, 22, 1), mode="imm")
    if _bits(word, 24, 5) == 0b01011 and not _bits(word, 21, 1):
        shift, amount = _bits(word, 22, 2), _bits(word, 10, 6)
        if shift != 3 and (sf or amount < 32):
            return A64(_ADDSUB[_bits(word, 29, 2)], sf=sf, rd=rd, rn=rn, rm=rm, shift=shift, amount=amount)
    if _bits(word, 23, 6) == 0b100100:
        n, immr, imms = _bits(word, 22, 1), _bits(word, 16, 6), _bits(word, 10, 6)
        if decode_bit_masks(n, imms, immr, sf) is not None:
            return A64(_LOGIC[_bits(word, 29, 2)], sf=sf, rd=rd, rn=rn, n=n, immr=immr, imms=imms, mode="imm")
    if _bits(word, 24, 5) == 0b01010 and not _bits(word, 21, 1):
        amount = _bits(word, 10, 6)
        if sf or amount < 32:
            return A64(_LOGIC[_bits(word, 29, 2)], sf=sf, rd=rd, rn=rn, rm=rm, shift=_bits(word, 22, 2),
                       amount=amount)
    if _bits(word, 21, 10) == 0b0011011000:
        return A64("msub" if _bits(word, 15, 1) else "madd", sf=sf, rd=rd, rn=rn, rm=rm, ra=_bits(word, 10, 5))
    if _bits(word, 21, 10) == 0b0011010110 and _bits(word, 10, 6) in _SHIFTV_BY_CODE:
        return A64(_SHIFTV_BY_CODE[_bits(word, 10, 6)], sf=sf, rd=rd, rn=rn, rm=rm)
    if _bits(word, 23, 6) == 0b100110 and _bits(word, 29, 2) in (0, 2) and _bits(word, 22, 1) == int(sf):
        immr, imms = _bits(word, 16, 6), _bits(word, 10, 6)
        if sf or (immr < 32 and imms < 32):
            return A64("sbfm" if _bits(word, 29, 2) == 0 else "ubfm", sf=sf, rd=rd, rn=rn, immr=immr, imms=imms)
    if _bits(word, 21, 10) & 0x3FF == 0b0011010100 and _bits(word, 11, 1) == 0:
        return A64("csinc" if _bits(word, 10, 1) else "csel", sf=sf, rd=rd, rn=rn, rm=rm, cond=_bits(word, 12, 4))
    if word & 0x7C000000 == 0x14000000:
        return A64("bl" if word >> 31 else "b", imm=_sext(word, 26) * 4)
    if word & 0xFF000010 == 0x54000000:
        return A64("b.cond", imm=_sext(word >> 5, 19) * 4, cond=word & 0xF)
    if word & 0x7E000000 == 0x34000000:
        return A64("cbnz" if _bits(word, 24, 1) else "cbz", sf=sf, rd=rd, imm=_sext(word >> 5, 19) * 4)
    if word & 0x1F000000 == 0x10000000:
        imm = _sext((_bits(word, 5, 19) << 2) | _bits(word, 29, 2), 21)
        return A64("adrp", rd=rd, imm=imm << 12) if word >> 31 else A64("adr", rd=rd, imm=imm)
    if _bits(word, 22, 10) == 0b1101010100 and _bits(word, 20, 1):
        reg = _bits(word, 5, 15)
        return A64("mrs" if _bits(word, 21, 1) else "msr", rd=rd, sysreg=reg)
    if word & 0xFFFFF0DF == 0xD50340DF:
        return A64("msr daifclr" if _bits(word, 5, 1) else "msr daifset", imm=_bits(word, 8, 4))
    if word & 0xFFF8F000 == 0xD5088000:
        op1, crm, op2 = _bits(word, 16, 3), _bits(word, 8, 4), _bits(word, 5, 3)
        name = _TLBI_BY_FIELDS.get((op1, crm, op2))
        if name is not None and (TLBI_OPS[name][3] or rd == ZR):
            return A64("tlbi", rd=rd, sysreg=(op1 << 7) | (crm << 3) | op2)
    if word & 0x3F000000 == 0x39000000 and not _bits(word, 23, 1):
        size = 1 << _bits(word, 30, 2)
        return A64("ldr" if _bits(word, 22, 1) else "str", rd=rd, rn=rn, imm=_bits(word, 10, 12) * size,
                   size=size, mode="uoff", sf=size == 8)
    if word & 0x3F200000 == 0x38000000 and not _bits(word, 23, 1) and _bits(word, 10, 2) != 2:
        size = 1 << _bits(word, 30, 2)
        mode = {0: "unscaled", 1: "post", 3: "pre"}[_bits(word, 10, 2)]
        return A64("ldr" if _bits(word, 22, 1) else "str", rd=rd, rn=rn, imm=_sext(word >> 12, 9), size=size,
                   mode=mode, sf=size == 8)
    if word & 0xFE000000 == 0xA8000000 and _bits(word, 23, 2) in (1, 2, 3):
        mode = {1: "post", 2: "off", 3: "pre"}[_bits(word, 23, 2)]
        return A64("ldp" if _bits(word, 22, 1) else "stp", rd=rd, rn=rn, ra=_bits(word, 10, 5),
                   imm=_sext(word >> 15, 7) * 8, mode=mode)
    raise A64DecodeError(f"{word:#010x} is not an instruction of the lab's A64 subset")


# ----------------------------------------------------------------- text
def reg_name(n: int, sf: bool = True, sp: bool = False) -> str:
    """x0..x30, and register 31 as sp (where it means the stack pointer) or xzr."""
    if n == ZR:
        return ("sp" if sf else "wsp") if sp else ("xzr" if sf else "wzr")
    return f"{'x' if sf else 'w'}{n}"


def _imm(v: int) -> str:
    return f"#{v:#x}" if v > 9 or v < -9 else f"#{v}"


def sysreg_name(packed: int) -> str:
    reg: SysReg | None = SYSREG_BY_ENCODING.get(packed)
    if reg is not None:
        return reg.name
    op0, op1, crn, crm, op2 = (2 | (packed >> 14 & 1)), packed >> 11 & 7, packed >> 7 & 15, packed >> 3 & 15, packed & 7
    return f"s{op0}_{op1}_c{crn}_c{crm}_{op2}"


def disassemble(i: A64, address: int = 0) -> str:
    """``i`` as the assembler reads it (aliases as objdump prints them: mov, cmp, lsl, mul, ret ...)."""
    op, sf = i.op, i.sf
    r = lambda n, sp=False: reg_name(n, sf, sp)  # noqa: E731
    if op in _FIXED:
        return op + (" sy" if op in ("dsb", "dmb") else "")
    if op in _EXCEPTIONS:
        return f"{op} {_imm(i.imm)}"
    if op in _BRANCH_REG:
        return "ret" if op == "ret" and i.rn == 30 else f"{op} {reg_name(i.rn)}"
    if op in _MOVE_WIDE:
        sh = f", lsl #{i.shift * 16}" if i.shift else ""
        return f"{op} {r(i.rd)}, {_imm(i.imm)}{sh}"
    if op in _ADDSUB and i.mode == "imm":
        sh = ", lsl #12" if i.shift else ""
        if op == "subs" and i.rd == ZR:
            return f"cmp {r(i.rn, True)}, {_imm(i.imm)}{sh}"
        if op == "adds" and i.rd == ZR:
            return f"cmn {r(i.rn, True)}, {_imm(i.imm)}{sh}"
        if op == "add" and i.imm == 0 and not i.shift and ZR in (i.rd, i.rn):
            return f"mov {r(i.rd, True)}, {r(i.rn, True)}"
        return f"{op} {r(i.rd, op in ('add', 'sub'))}, {r(i.rn, True)}, {_imm(i.imm)}{sh}"
    if op in _ADDSUB or op in _LOGIC and i.mode != "imm":
        sh = f", {SHIFT_NAMES[i.shift]} #{i.amount}" if i.amount else ""
        if op == "subs" and i.rd == ZR:
            return f"cmp {r(i.rn)}, {r(i.rm)}{sh}"
        if op == "ands" and i.rd == ZR:
            return f"tst {r(i.rn)}, {r(i.rm)}{sh}"
        if op == "orr" and i.rn == ZR and not i.amount:
            return f"mov {r(i.rd)}, {r(i.rm)}"
        if op == "sub" and i.rn == ZR:
            return f"neg {r(i.rd)}, {r(i.rm)}{sh}"
        return f"{op} {r(i.rd)}, {r(i.rn)}, {r(i.rm)}{sh}"
    if op in _LOGIC:
        value = decode_bit_masks(i.n, i.imms, i.immr, sf)
        if op == "ands" and i.rd == ZR:
            return f"tst {r(i.rn)}, #{value:#x}"
        return f"{op} {r(i.rd, op != 'ands')}, {r(i.rn)}, #{value:#x}"
    if op in ("madd", "msub"):
        if i.ra == ZR:
            return f"{'mul' if op == 'madd' else 'mneg'} {r(i.rd)}, {r(i.rn)}, {r(i.rm)}"
        return f"{op} {r(i.rd)}, {r(i.rn)}, {r(i.rm)}, {r(i.ra)}"
    if op in _SHIFTV:
        name = op[:-1] if op in ("lslv", "lsrv", "asrv") else op
        return f"{name} {r(i.rd)}, {r(i.rn)}, {r(i.rm)}"
    if op in ("sbfm", "ubfm"):
        width = 64 if sf else 32
        if op == "ubfm" and i.imms == width - 1:
            return f"lsr {r(i.rd)}, {r(i.rn)}, #{i.immr}"
        if op == "ubfm" and i.imms + 1 == i.immr:
            return f"lsl {r(i.rd)}, {r(i.rn)}, #{width - 1 - i.imms}"
        if op == "sbfm" and i.imms == width - 1:
            return f"asr {r(i.rd)}, {r(i.rn)}, #{i.immr}"
        return f"{op} {r(i.rd)}, {r(i.rn)}, #{i.immr}, #{i.imms}"
    if op in ("csel", "csinc"):
        if op == "csinc" and i.rn == ZR and i.rm == ZR and i.cond < 14:
            return f"cset {r(i.rd)}, {COND_NAMES[i.cond ^ 1]}"
        return f"{op} {r(i.rd)}, {r(i.rn)}, {r(i.rm)}, {COND_NAMES[i.cond]}"
    if op in ("b", "bl"):
        return f"{op} {(address + i.imm) & M64:#x}"
    if op == "b.cond":
        return f"b.{COND_NAMES[i.cond]} {(address + i.imm) & M64:#x}"
    if op in ("cbz", "cbnz"):
        return f"{op} {r(i.rd)}, {(address + i.imm) & M64:#x}"
    if op == "adr":
        return f"adr {reg_name(i.rd)}, {(address + i.imm) & M64:#x}"
    if op == "adrp":
        return f"adrp {reg_name(i.rd)}, {((address & ~0xFFF) + i.imm) & M64:#x}"
    if op == "msr":
        return f"msr {sysreg_name(i.sysreg)}, {reg_name(i.rd)}"
    if op == "mrs":
        return f"mrs {reg_name(i.rd)}, {sysreg_name(i.sysreg)}"
    if op in ("msr daifset", "msr daifclr"):
        return f"{op}, {_imm(i.imm)}"
    if op == "tlbi":
        name = _TLBI_BY_FIELDS[(i.sysreg >> 7, (i.sysreg >> 3) & 0xF, i.sysreg & 7)]
        return f"tlbi {name}, {reg_name(i.rd)}" if TLBI_OPS[name][3] else f"tlbi {name}"
    if op in ("ldr", "str"):
        name = op + {1: "b", 2: "h", 4: "", 8: ""}[i.size]
        if i.mode == "unscaled":
            name = name.replace("ldr", "ldur").replace("str", "stur")
        rt = reg_name(i.rd, i.size == 8)
        base = reg_name(i.rn, sp=True)
        return f"{name} {rt}, {_address(base, i.imm, i.mode)}"
    if op in ("ldp", "stp"):
        return f"{op} {reg_name(i.rd)}, {reg_name(i.ra)}, {_address(reg_name(i.rn, sp=True), i.imm, i.mode)}"
    raise ValueError(f"cannot print {op}")


def _address(base: str, imm: int, mode: str) -> str:
    if mode == "post":
        return f"[{base}], {_imm(imm)}"
    if mode == "pre":
        return f"[{base}, {_imm(imm)}]!"
    return f"[{base}, {_imm(imm)}]" if imm else f"[{base}]"
