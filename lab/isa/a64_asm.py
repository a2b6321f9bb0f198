"""Arm-syntax operands for the assembler (after ``.arch arm64``).

The assembler's lexer, expressions, labels, sections and directives are the
same for both profiles; this module reads the operands of one A64
instruction in pass 1 (syntax only, so labels may come later) and, in pass 2,
turns them into an :class:`~lab.isa.a64.A64` with every value known. Syntax
is GNU as's for AArch64: ``#`` before an immediate (optional), ``[x1, #8]``,
``[x1, #8]!`` (pre-index), ``[x1], #8`` (post-index), ``lsl #12``, condition
suffixes ``b.eq``, system registers and TLB operations by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .a64 import (COND_ALIASES, COND_NAMES, SHIFT_NAMES, TLBI_OPS, ZR, A64, encode_bit_masks)
from .a64_sysregs import SYSREGS

_REG = re.compile(r"([xw])([0-9]|[12][0-9]|30)")
_SPECIAL = {"sp": (ZR, True, True), "wsp": (ZR, False, True), "xzr": (ZR, True, False), "wzr": (ZR, False, False),
            "lr": (30, True, False), "fp": (29, True, False)}
_CONDS = {name: i for i, name in enumerate(COND_NAMES)} | COND_ALIASES
_SIZES = {"ldr": 8, "str": 8, "ldur": 8, "stur": 8, "ldrb": 1, "strb": 1, "ldrh": 2, "strh": 2}

MNEMONICS = frozenset({
    "mov", "movz", "movn", "movk", "add", "adds", "sub", "subs", "cmp", "cmn", "neg", "and", "orr", "eor", "ands",
    "tst", "mul", "madd", "msub", "udiv", "sdiv", "lsl", "lsr", "asr", "csel", "cset", "b", "bl", "cbz", "cbnz",
    "br", "blr", "ret", "adr", "adrp", "svc", "hvc", "smc", "brk", "eret", "nop", "wfi", "wfe", "yield", "isb",
    "dsb", "dmb", "msr", "mrs", "tlbi", "ldp", "stp", *_SIZES,
}) | {f"b.{c}" for c in _CONDS}

RESERVED = frozenset({f"{p}{n}" for p in "xw" for n in range(31)} | set(_SPECIAL) | set(SYSREGS) |
                     set(TLBI_OPS) | {"daifset", "daifclr"})


@dataclass(frozen=True)
class Reg:
    n: int
    sf: bool          # an X register (64-bit), else W
    sp: bool          # written sp/wsp (register 31 as the stack pointer)
    col: int


@dataclass(frozen=True)
class Imm:
    node: Any
    col: int
    hashed: bool      # written with '#'


@dataclass(frozen=True)
class Mem:
    base: Reg
    offset: Any       # an expression node, or None
    pre: bool         # [base, #off]!
    col: int


@dataclass(frozen=True)
class Shift:
    kind: int
    amount: Any
    col: int


@dataclass(frozen=True)
class Name:
    text: str
    col: int


def register(text: str, col: int) -> Reg | None:
    low = text.lower()
    if low in _SPECIAL:
        n, sf, sp = _SPECIAL[low]
        return Reg(n, sf, sp, col)
    m = _REG.fullmatch(low)
    return Reg(int(m.group(2)), m.group(1) == "x", False, col) if m else None


def parse_operands(parts: list[list[Any]], expr_of: Any, where: Any, fail: Any) -> list[Any]:
    """Pass 1: each comma-separated part (tokens ending with 'end') to an operand.

    ``expr_of(tokens)`` parses tokens (without the 'end') as one whole expression;
    ``fail(where, col, message)`` makes the assembler's error.
    """
    return [_operand(toks[:-1], expr_of, where, fail) for toks in parts]


def _operand(toks: list[Any], expr_of: Any, where: Any, fail: Any) -> Any:
    t = toks[0]
    if t.kind == "op" and t.text == "[":
        return _mem(toks, expr_of, where, fail)
    if t.kind == "op" and t.text == "#":
        if len(toks) == 1:
            raise fail(where, t.col, "missing value after '#'")
        return Imm(expr_of(toks[1:]), t.col, True)
    if t.kind == "id" and len(toks) == 1:
        reg = register(t.text, t.col)
        if reg is not None:
            return reg
        if t.text.lower() in _CONDS or t.text.lower() in SYSREGS or t.text.lower() in TLBI_OPS \
                or t.text.lower() in ("daifset", "daifclr"):
            return Name(t.text.lower(), t.col)
    if t.kind == "id" and t.text.lower() in SHIFT_NAMES:
        rest = toks[1:]
        if rest and rest[0].kind == "op" and rest[0].text == "#":
            rest = rest[1:]
        if not rest:
            raise fail(where, t.col, f"missing shift amount after '{t.text}'")
        return Shift(SHIFT_NAMES.index(t.text.lower()), expr_of(rest), t.col)
    return Imm(expr_of(toks), t.col, False)


def _mem(toks: list[Any], expr_of: Any, where: Any, fail: Any) -> Mem:
    close = next((k for k, t in enumerate(toks) if t.kind == "op" and t.text == "]"), None)
    if close is None:
        raise fail(where, toks[0].col, "missing ']'")
    inner, after = toks[1:close], toks[close + 1:]
    if not inner or inner[0].kind != "id" or register(inner[0].text, inner[0].col) is None:
        raise fail(where, (inner[0] if inner else toks[0]).col, "expected a base register after '['")
    base = register(inner[0].text, inner[0].col)
    assert base is not None
    if not base.sf:
        raise fail(where, base.col, "the base register must be an X register or sp")
    offset = None
    if len(inner) > 1:
        if not (inner[1].kind == "op" and inner[1].text == ","):
            raise fail(where, inner[1].col, "expected ',' or ']' after the base register")
        rest = inner[2:]
        if rest and rest[0].kind == "op" and rest[0].text == "#":
            rest = rest[1:]
        if not rest:
            raise fail(where, inner[1].col, "missing offset after ','")
        offset = expr_of(rest)
    pre = False
    if after and after[0].kind == "op" and after[0].text == "!":
        pre, after = True, after[1:]
        if offset is None:
            raise fail(where, toks[0].col, "pre-index '!' needs an offset: [xN, #imm]!")
    if after:
        raise fail(where, after[0].col, f"unexpected {after[0].show()} after the memory operand")
    return Mem(base, offset, pre, toks[0].col)


# ----------------------------------------------------------------- pass 2
class Builder:
    """Turns one parsed instruction into an A64, reporting mistakes at their column."""

    def __init__(self, mnemonic: str, col: int, ops: list[Any], value: Any, address: int, fail: Any) -> None:
        self.mn = mnemonic
        self.col = col
        self.ops = ops
        self.value = value          # node -> int
        self.address = address
        self.fail = fail

    def error(self, col: int, message: str) -> Exception:
        return self.fail(col, message)

    # -- operand helpers ------------------------------------------------
    def want(self, n: int | tuple[int, ...]) -> None:
        counts = (n,) if isinstance(n, int) else n
        if len(self.ops) not in counts:
            want = " or ".join(str(c) for c in counts)
            raise self.error(self.col, f"'{self.mn}' takes {want} operand{'s' if counts != (1,) else ''}")

    def reg(self, k: int, sp: bool = False, what: str = "a register") -> Reg:
        op = self.ops[k]
        if not isinstance(op, Reg):
            raise self.error(self._col(op), f"operand {k + 1} of '{self.mn}' must be {what}")
        if op.n == ZR and op.sp != sp:
            if sp:
                raise self.error(op.col, f"'{self.mn}' takes sp here, not the zero register")
            raise self.error(op.col, f"'{self.mn}' cannot use sp here (register 31 is the zero register)")
        return op

    def imm(self, k: int) -> int:
        op = self.ops[k]
        if not isinstance(op, Imm):
            raise self.error(self._col(op), f"operand {k + 1} of '{self.mn}' must be an immediate (#value)")
        return self.value(op.node)

    def target(self, k: int) -> int:
        op = self.ops[k]
        if not isinstance(op, Imm):
            raise self.error(self._col(op), f"operand {k + 1} of '{self.mn}' must be a label or address")
        return self.value(op.node) - self.address

    def same_width(self, *regs: Reg) -> bool:
        sf = regs[0].sf
        for r in regs[1:]:
            if r.sf != sf:
                raise self.error(r.col, "the registers must all be X or all be W registers")
        return sf

    def shift(self, k: int, kinds: tuple[int, ...] = (0, 1, 2)) -> tuple[int, int]:
        if len(self.ops) <= k:
            return 0, 0
        op = self.ops[k]
        if not isinstance(op, Shift) or op.kind not in kinds:
            allowed = ", ".join(SHIFT_NAMES[i] for i in kinds)
            raise self.error(self._col(op), f"expected a shift ({allowed} #n)")
        return op.kind, self.value(op.amount)

    @staticmethod
    def _col(op: Any) -> int:
        return getattr(op, "col", 1)

    # -- dispatch -------------------------------------------------------
    def build(self) -> A64:
        mn = self.mn
        if mn.startswith("b.") and mn != "b.":
            self.want(1)
            return A64("b.cond", cond=_CONDS[mn[2:]], imm=self.target(0))
        method = getattr(self, "_" + mn, None)
        if method is not None:
            return method()
        if mn in ("add", "adds", "sub", "subs"):
            return self._addsub(mn)
        if mn in ("and", "orr", "eor", "ands"):
            return self._logic(mn)
        if mn in _SIZES:
            return self._ldst(mn)
        raise self.error(self.col, f"unknown instruction '{mn}'")

    def _none(self) -> A64:
        self.want(0)
        return A64(self.mn)

    _nop = _wfi = _wfe = _yield = _isb = _eret = _none

    def _barrier(self) -> A64:
        if self.ops and not (len(self.ops) == 1 and isinstance(self.ops[0], Imm) and not self.ops[0].hashed
                             and getattr(self.ops[0].node, "name", "") == "sy"):
            raise self.error(self.col, f"'{self.mn}' takes only 'sy' in the lab")
        return A64(self.mn)

    _dsb = _dmb = _barrier

    def _exception(self) -> A64:
        self.want(1)
        return A64(self.mn, imm=self._fit(self.imm(0), 0, 0xFFFF, 0))

    _svc = _hvc = _smc = _brk = _exception

    def _fit(self, v: int, lo: int, hi: int, k: int) -> int:
        if not lo <= v <= hi:
            raise self.error(self._col(self.ops[k]), f"value {v:#x} is out of range ({lo:#x} to {hi:#x})")
        return v

    def _b(self) -> A64:
        self.want(1)
        return A64("b", imm=self.target(0))

    def _bl(self) -> A64:
        self.want(1)
        return A64("bl", imm=self.target(0))

    def _cbz(self) -> A64:
        self.want(2)
        r = self.reg(0)
        return A64(self.mn, sf=r.sf, rd=r.n, imm=self.target(1))

    _cbnz = _cbz

    def _br(self) -> A64:
        self.want(1)
        return A64(self.mn, rn=self.reg(0).n)

    _blr = _br

    def _ret(self) -> A64:
        self.want((0, 1))
        return A64("ret", rn=self.reg(0).n if self.ops else 30)

    def _adr(self) -> A64:
        self.want(2)
        rd = self.reg(0)
        if self.mn == "adrp":
            target = self.target(1) + self.address
            return A64("adrp", rd=rd.n, imm=(target & ~0xFFF) - (self.address & ~0xFFF))
        return A64("adr", rd=rd.n, imm=self.target(1))

    _adrp = _adr

    # -- moves -----------------------------------------------------------
    def _movewide(self) -> A64:
        self.want((2, 3))
        rd = self.reg(0)
        hw = 0
        if len(self.ops) == 3:
            kind, amount = self.shift(2, (0,))
            if amount % 16 or amount // 16 >= (4 if rd.sf else 2):
                raise self.error(self._col(self.ops[2]), "the shift must be lsl #0, #16, #32 or #48")
            hw = amount // 16
        return A64(self.mn, sf=rd.sf, rd=rd.n, imm=self._fit(self.imm(1), 0, 0xFFFF, 1), shift=hw)

    _movz = _movn = _movk = _movewide

    def _mov(self) -> A64:
        self.want(2)
        rd = self.ops[0]
        src = self.ops[1]
        if isinstance(src, Reg) and isinstance(rd, Reg):
            sf = self.same_width(rd, src)
            if rd.sp or src.sp:             # to or from the stack pointer: add #0
                return A64("add", sf=sf, rd=rd.n, rn=src.n, mode="imm")
            return A64("orr", sf=sf, rd=rd.n, rn=ZR, rm=src.n)
        r = self.reg(0, sp=isinstance(rd, Reg) and rd.sp)
        value = self.imm(1)
        width = 64 if r.sf else 32
        mask = (1 << width) - 1
        if not -(1 << (width - 1)) <= value <= mask:
            raise self.error(self._col(src), f"value {value:#x} does not fit in a {width}-bit register")
        value &= mask
        for hw in range(width // 16):
            if value & ~(0xFFFF << (16 * hw)) == 0:
                return A64("movz", sf=r.sf, rd=r.n, imm=value >> (16 * hw), shift=hw)
        inv = ~value & mask
        for hw in range(width // 16):
            if inv & ~(0xFFFF << (16 * hw)) == 0:
                return A64("movn", sf=r.sf, rd=r.n, imm=inv >> (16 * hw), shift=hw)
        bm = encode_bit_masks(value, r.sf)
        if bm is not None:
            return A64("orr", sf=r.sf, rd=r.n, rn=ZR, n=bm[0], immr=bm[1], imms=bm[2], mode="imm")
        raise self.error(self._col(src), f"{value:#x} cannot be made by one instruction: build it with "
                         "movz and movk (16 bits at a time)")

    # -- arithmetic and logic ----------------------------------------------
    def _addsub(self, op: str, rd_zero: bool = False) -> A64:
        self.want((3, 4))
        flags = op.endswith("s")
        rd = self.reg(0, sp=not flags and isinstance(self.ops[0], Reg) and self.ops[0].sp)
        rn = self.reg(1, sp=isinstance(self.ops[1], Reg) and self.ops[1].sp)
        third = self.ops[2]
        if isinstance(third, Imm):
            sf = self.same_width(rd, rn)
            sh = 0
            if len(self.ops) == 4:
                _, amount = self.shift(3, (0,))
                if amount not in (0, 12):
                    raise self.error(self._col(self.ops[3]), "the immediate's shift must be lsl #0 or lsl #12")
                sh = amount // 12
            return A64(op, sf=sf, rd=rd.n, rn=rn.n, imm=self._fit(self.imm(2), 0, 0xFFF, 2), shift=sh, mode="imm")
        if rd.sp or rn.sp:
            raise self.error(rd.col if rd.sp else rn.col, "sp cannot be used with a register operand here")
        rm = self.reg(2)
        sf = self.same_width(rd, rn, rm)
        kind, amount = self.shift(3)
        return A64(op, sf=sf, rd=rd.n, rn=rn.n, rm=rm.n, shift=kind, amount=self._fit(amount, 0, 63 if sf else 31, 3)
                   if len(self.ops) == 4 else 0)

    def _cmp(self) -> A64:
        self.ops = [Reg(ZR, self._width_of(0), False, self.col)] + self.ops
        return self._addsub("subs" if self.mn == "cmp" else "adds")

    _cmn = _cmp

    def _width_of(self, k: int) -> bool:
        op = self.ops[k] if k < len(self.ops) else None
        return op.sf if isinstance(op, Reg) else True

    def _neg(self) -> A64:
        self.want((2, 3))
        self.ops = [self.ops[0], Reg(ZR, self._width_of(0), False, self.col)] + self.ops[1:]
        return self._addsub("sub")

    def _logic(self, op: str) -> A64:
        self.want((3, 4))
        rd = self.reg(0, sp=op != "ands" and isinstance(self.ops[0], Reg) and self.ops[0].sp)
        rn = self.reg(1)
        if isinstance(self.ops[2], Imm):
            self.want(3)
            sf = self.same_width(rd, rn)
            value = self.imm(2)
            bm = encode_bit_masks(value, sf)
            if bm is None:
                raise self.error(self._col(self.ops[2]), f"{value:#x} is not a logical immediate (a repeating "
                                 "pattern of one run of ones); put it in a register first")
            return A64(op, sf=sf, rd=rd.n, rn=rn.n, n=bm[0], immr=bm[1], imms=bm[2], mode="imm")
        rm = self.reg(2)
        sf = self.same_width(rd, rn, rm)
        kind, amount = self.shift(3, (0, 1, 2, 3))
        return A64(op, sf=sf, rd=rd.n, rn=rn.n, rm=rm.n, shift=kind, amount=amount)

    def _tst(self) -> A64:
        self.ops = [Reg(ZR, self._width_of(0), False, self.col)] + self.ops
        return self._logic("ands")

    def _mul(self) -> A64:
        self.want(3)
        rd, rn, rm = self.reg(0), self.reg(1), self.reg(2)
        return A64("madd", sf=self.same_width(rd, rn, rm), rd=rd.n, rn=rn.n, rm=rm.n, ra=ZR)

    def _madd(self) -> A64:
        self.want(4)
        rd, rn, rm, ra = self.reg(0), self.reg(1), self.reg(2), self.reg(3)
        return A64(self.mn, sf=self.same_width(rd, rn, rm, ra), rd=rd.n, rn=rn.n, rm=rm.n, ra=ra.n)

    _msub = _madd

    def _div(self) -> A64:
        self.want(3)
        rd, rn, rm = self.reg(0), self.reg(1), self.reg(2)
        return A64(self.mn, sf=self.same_width(rd, rn, rm), rd=rd.n, rn=rn.n, rm=rm.n)

    _udiv = _sdiv = _div

    def _shift_insn(self) -> A64:
        self.want(3)
        rd, rn = self.reg(0), self.reg(1)
        if isinstance(self.ops[2], Reg):
            rm = self.reg(2)
            return A64(self.mn + "v", sf=self.same_width(rd, rn, rm), rd=rd.n, rn=rn.n, rm=rm.n)
        sf = self.same_width(rd, rn)
        width = 64 if sf else 32
        s = self._fit(self.imm(2), 0, width - 1, 2)
        if self.mn == "lsl":
            return A64("ubfm", sf=sf, rd=rd.n, rn=rn.n, immr=(-s) % width, imms=width - 1 - s)
        return A64("ubfm" if self.mn == "lsr" else "sbfm", sf=sf, rd=rd.n, rn=rn.n, immr=s, imms=width - 1)

    _lsl = _lsr = _asr = _shift_insn

    def _cond(self, k: int) -> int:
        op = self.ops[k]
        if not isinstance(op, Name) or op.text not in _CONDS:
            raise self.error(self._col(op), "expected a condition (eq, ne, lt, ge, hi, ls ...)")
        return _CONDS[op.text]

    def _csel(self) -> A64:
        self.want(4)
        rd, rn, rm = self.reg(0), self.reg(1), self.reg(2)
        return A64("csel", sf=self.same_width(rd, rn, rm), rd=rd.n, rn=rn.n, rm=rm.n, cond=self._cond(3))

    def _cset(self) -> A64:
        self.want(2)
        rd = self.reg(0)
        cond = self._cond(1)
        if cond >= 14:
            raise self.error(self._col(self.ops[1]), "cset cannot use al or nv")
        return A64("csinc", sf=rd.sf, rd=rd.n, rn=ZR, rm=ZR, cond=cond ^ 1)

    # -- system ------------------------------------------------------------
    def _msr(self) -> A64:
        self.want(2)
        name = self.ops[0]
        if isinstance(name, Name) and name.text in ("daifset", "daifclr"):
            return A64(f"msr {name.text}", imm=self._fit(self.imm(1), 0, 15, 1))
        reg = self._sysreg(0)
        rt = self.reg(1)
        if not rt.sf:
            raise self.error(rt.col, "msr takes an X register")
        if not reg.writable:
            raise self.error(self._col(name), f"{reg.name} is read-only")
        return A64("msr", rd=rt.n, sysreg=reg.packed)

    def _mrs(self) -> A64:
        self.want(2)
        rt = self.reg(0)
        if not rt.sf:
            raise self.error(rt.col, "mrs takes an X register")
        return A64("mrs", rd=rt.n, sysreg=self._sysreg(1).packed)

    def _sysreg(self, k: int) -> Any:
        op = self.ops[k]
        if isinstance(op, Name) and op.text in SYSREGS:
            return SYSREGS[op.text]
        text = getattr(getattr(op, "node", None), "name", None)
        raise self.error(self._col(op), f"unknown system register '{text}'" if text else
                         f"operand {k + 1} of '{self.mn}' must be a system register")

    def _tlbi(self) -> A64:
        self.want((1, 2))
        op = self.ops[0]
        if not isinstance(op, Name) or op.text not in TLBI_OPS:
            raise self.error(self._col(op), f"unknown TLB operation (the lab has: {', '.join(sorted(TLBI_OPS))})")
        op1, crm, op2, takes_reg = TLBI_OPS[op.text]
        if takes_reg != (len(self.ops) == 2):
            raise self.error(self.col, f"tlbi {op.text} {'takes an address register' if takes_reg else 'takes no register'}")
        rt = self.reg(1).n if takes_reg else ZR
        return A64("tlbi", rd=rt, sysreg=(op1 << 7) | (crm << 3) | op2)

    # -- loads and stores --------------------------------------------------
    def _ldst(self, mn: str) -> A64:
        self.want((2, 3))
        op = "ldr" if mn.startswith("ld") else "str"
        size = _SIZES[mn]
        rt = self.reg(0)
        if size == 8 and not rt.sf:
            size = 4
        elif size < 8 and rt.sf and op == "ldr":
            raise self.error(rt.col, f"{mn} loads into a W register")
        mem = self.ops[1]
        if not isinstance(mem, Mem):
            raise self.error(self._col(mem), f"operand 2 of '{mn}' must be a memory operand [xN, #offset]")
        offset = self.value(mem.offset) if mem.offset is not None else 0
        if len(self.ops) == 3:                       # [xN], #imm: post-index
            if mem.offset is not None or mem.pre:
                raise self.error(self._col(self.ops[2]), "post-index takes [xN], #offset")
            post = self.imm(2)
            return A64(op, rd=rt.n, rn=mem.base.n, imm=self._fit(post, -256, 255, 2), size=size, mode="post",
                       sf=size == 8)
        if mem.base.n == ZR and not mem.base.sp:
            raise self.error(mem.base.col, "the base register cannot be xzr")
        if mem.pre:
            return A64(op, rd=rt.n, rn=mem.base.n, imm=self._fit(offset, -256, 255, 1), size=size, mode="pre",
                       sf=size == 8)
        if mn in ("ldur", "stur") or offset < 0 or offset % size:
            return A64(op, rd=rt.n, rn=mem.base.n, imm=self._fit(offset, -256, 255, 1), size=size, mode="unscaled",
                       sf=size == 8)
        return A64(op, rd=rt.n, rn=mem.base.n, imm=self._fit(offset, 0, 4095 * size, 1), size=size, mode="uoff",
                   sf=size == 8)

    def _pair(self) -> A64:
        self.want((3, 4))
        rt, rt2 = self.reg(0), self.reg(1)
        if not (rt.sf and rt2.sf):
            raise self.error(rt.col, f"{self.mn} takes X registers in the lab")
        mem = self.ops[2]
        if not isinstance(mem, Mem):
            raise self.error(self._col(mem), f"operand 3 of '{self.mn}' must be a memory operand")
        if len(self.ops) == 4:
            if mem.offset is not None or mem.pre:
                raise self.error(self._col(self.ops[3]), "post-index takes [xN], #offset")
            imm, mode = self.imm(3), "post"
        else:
            imm = self.value(mem.offset) if mem.offset is not None else 0
            mode = "pre" if mem.pre else "off"
        if imm % 8 or not -512 <= imm <= 504:
            raise self.error(mem.col, "the offset must be a multiple of 8 from -512 to 504")
        return A64(self.mn, rd=rt.n, ra=rt2.n, rn=mem.base.n, imm=imm, mode=mode)

    _ldp = _stp = _pair
