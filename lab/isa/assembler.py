"""The assembler: Intel-syntax source text to an :class:`~lab.isa.image.Image`.

It works in two passes. The first reads every line (following ``.include``),
checks its syntax, places sections and labels and reserves room for every
instruction and data item; since every instruction is 16 bytes, addresses are
known without looking at operand values. The second pass evaluates operands,
so labels may be used before they are defined, and encodes.

Every mistake in the source is reported as :class:`AsmError`, one line of the
form ``file:line:col: message``; nothing else escapes.

The module reads top to bottom as the data flows: the lexer (a line to
tokens), constant expressions, operand parsing, sections and symbols, the two
passes, the instruction builder (operands to an Instruction), the public API.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

from .. import sources
from . import a64_asm, opcodes
from .errors import AsmError
from .a64 import A64
from .a64 import INSN_SIZE as A64_SIZE
from .a64 import encode as encode_a64
from .bits import M64
from .encoding import INSN_SIZE, Instruction, Mem, decode, encode
from .image import Image, Section, SourceLine
from .registers import CONTROL_REGS, GPR_BY_NAME, RIP_BASE, SIZE_BY_NAME, SIZE_NAMES

#: Largest section the assembler builds; protects against `.space 1 << 40` typos.
MAX_SECTION = 64 << 20
#: Where the first section goes when nothing says otherwise.
DEFAULT_ORIGIN = 0
PAGE = 4096
_MAX_DEPTH = 100            # expression nesting, and .equ chains
_MAX_NODES = 200            # operators in one expression (keeps recursion shallow)
_MAX_SHIFT = 1024           # keeps `1 << huge` from eating memory
_MAX_INCLUDE_DEPTH = 32
_MAX_MACRO_DEPTH = 64          # macros expanding macros (and .rept inside them)
_MAX_EXPANDED_LINES = 1_000_000   # all .rept and macro expansion together: a typo must not hang
_EMPTY_SLOT = bytes(INSN_SIZE)    # an instruction's room, filled in pass 2
_DISP_IMM = struct.Struct("<ii")   # an instruction's bytes 8-15
_BLOCK_WORD = re.compile(r"\s*(\.[A-Za-z_]+)\b")
_MACRO_PARAM = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass
class _Macro:
    name: str
    params: list[tuple[str, str | None]]      # (name, default text or None)
    body: list[SourceLine]
    where: SourceLine


def _strip_comment(text: str) -> str:
    """The line without its ';' comment (a ';' inside a quoted string stays)."""
    quote = None
    for i, c in enumerate(text):
        if quote:
            if c == "\\":
                continue
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == ";":
            return text[:i]
    return text


def _split_macro_args(text: str) -> list[str]:
    """Macro arguments: comma-separated, commas inside brackets, parentheses or quotes kept."""
    out, depth, quote, cur = [], 0, None, ""
    for c in text:
        if quote:
            cur += c
            if c == quote:
                quote = None
            continue
        if c in "\"'":
            quote = c
        elif c in "[(":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        cur += c
    if cur.strip() or out:
        out.append(cur.strip())
    return out

_RESERVED = set(GPR_BY_NAME) | set(CONTROL_REGS) | set(SIZE_BY_NAME) | {"ptr", "rip"}
# Names that look like a register: an undefined one is more likely a typo for a register.
_REGISH = re.compile(r"(r\d{1,2}[dwb]?|r[a-z]{2}|e[a-z]{2}|[a-d][hl]|cr\d+|dr\d+|[xyz]mm\d+)", re.I)
# Table names that are not spellings: the assembler derives them from jne, sete, mov cr3 ...
_INTERNAL = {"jcc", "setcc", "cmovcc", "movs", "stos", "movtocr", "movfromcr"}


def _fail(where: SourceLine, col: int, message: str) -> AsmError:
    return AsmError(where.file, where.line, col, message)


def _fits_s32(v: int) -> bool:
    return -(1 << 31) <= v < (1 << 31)


def _signed64(v: int) -> int:
    """``v`` modulo 2**64, read as a signed number (addresses wrap as on the CPU)."""
    return ((v + (1 << 63)) & M64) - (1 << 63)


def _hex(v: int) -> str:
    return f"-{-v:#x}" if v < 0 else f"{v:#x}"


# ============================================================== lexer
class Tok(NamedTuple):
    """One token (a named tuple: lines are split into thousands of them)."""
    kind: str          # id num str ref op dot end
    text: str
    col: int           # 1-based column of the first character
    value: Any = None  # num: int; ref: (label, forward)

    def is_op(self, text: str) -> bool:
        return self.kind == "op" and self.text == text

    def show(self) -> str:
        return "end of line" if self.kind == "end" else f"'{self.text}'"


_OPS2 = ("<<", ">>")
_OPS1 = "+-*/%&|^~()[],:="
_ESCAPES = {"n": 10, "t": 9, "r": 13, "0": 0, "\\": 92, '"': 34, "'": 39}
_IDENT = re.compile(r"\.?[A-Za-z_][A-Za-z0-9_.]*")
_WORD = re.compile(r"[0-9A-Za-z_]+")


def tokenize(text: str, where: SourceLine, arm: bool = False) -> list[Tok]:
    """Split one source line into tokens; comments are dropped.

    With ``arm`` (after ``.arch arm64``) ``#`` marks an immediate, ``!`` a
    pre-indexed address, and ``//`` starts a comment, as in GNU as for AArch64.
    """
    return _split_line(text, where, arm)


def _split_line(text: str, where: SourceLine, arm: bool) -> list[Tok]:
    toks: list[Tok] = []
    if text.lstrip().startswith("#"):
        return [Tok("end", "", len(text) + 1)]
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        col = i + 1
        if c in " \t\r\f\v":
            i += 1
        elif c == ";" or (arm and text.startswith("//", i)):
            break
        elif arm and c in "#!":
            toks.append(Tok("op", c, col))
            i += 1
        elif c in "0123456789":
            m = _WORD.match(text, i)
            word = m.group()
            toks.append(_number(word, col, where))
            i = m.end()
        elif c.isascii() and (c.isalpha() or c == "_" or c == ".") and (m := _IDENT.match(text, i)):
            toks.append(Tok("id", m.group(), col))
            i = m.end()
        elif c == ".":
            toks.append(Tok("dot", ".", col))
            i += 1
        elif c == '"':
            data, i = _string(text, i, where)
            toks.append(Tok("str", text[col - 1:i], col, data))
        elif c == "'":
            data, i = _string(text, i, where)
            try:
                chars = data.decode("utf-8")
            except UnicodeDecodeError:
                chars = ""
            if len(data) != 1 and len(chars) != 1:
                raise _fail(where, col, "a character literal holds exactly one character")
            toks.append(Tok("num", text[col - 1:i], col, data[0] if len(data) == 1 else ord(chars)))
        elif text.startswith(_OPS2, i):
            toks.append(Tok("op", text[i:i + 2], col))
            i += 2
        elif c in _OPS1:
            toks.append(Tok("op", c, col))
            i += 1
        else:
            shown = c if c.isprintable() else repr(c)[1:-1]
            raise _fail(where, col, f"unexpected character '{shown}'")
    toks.append(Tok("end", "", n + 1))
    return toks


def _number(word: str, col: int, where: SourceLine) -> Tok:
    # `1f` / `1b` name the next / previous numeric label `1:` (GNU style).
    if re.fullmatch(r"\d+[fb]", word):
        return Tok("ref", word, col, (_label_key(word[:-1]), word[-1] == "f"))
    base = {"0x": 16, "0b": 2, "0o": 8}.get(word[:2].lower(), 10)
    digits = word[2:] if base != 10 else word
    try:
        if not digits or digits.startswith("_"):
            raise ValueError
        return Tok("num", word, col, int(digits, base))
    except ValueError:
        raise _fail(where, col, f"bad number '{word}'") from None


def _label_key(digits: str) -> str:
    """Numeric labels `01:` and `1:` are the same label."""
    return digits.lstrip("0") or "0"


def _string(text: str, i: int, where: SourceLine) -> tuple[bytes, int]:
    """Parse a quoted literal starting at text[i]; return its bytes and the index after it."""
    quote = text[i]
    out = bytearray()
    j = i + 1
    while j < len(text):
        c = text[j]
        if c == quote:
            return bytes(out), j + 1
        if c == "\\":
            e = text[j + 1:j + 2]
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
                j += 2
            elif e == "x" and (m := re.match(r"[0-9A-Fa-f]{1,2}", text[j + 2:j + 4])):
                out.append(int(m.group(), 16))
                j += 2 + m.end()
            else:
                raise _fail(where, j + 1, f"unknown escape '\\{e}'" if e else "backslash at end of line")
        else:
            out += c.encode("utf-8", "surrogatepass")
            j += 1
    what = "string" if quote == '"' else "character literal"
    raise _fail(where, i + 1, f"unterminated {what}")


# ============================================================== expressions
@dataclass(frozen=True, slots=True)
class Num:
    value: int
    col: int


@dataclass(frozen=True, slots=True)
class Sym:
    name: str
    col: int


@dataclass(frozen=True, slots=True)
class NumRef:
    label: str
    forward: bool
    col: int


@dataclass(frozen=True, slots=True)
class Dot:
    col: int


@dataclass(frozen=True, slots=True)
class RegNode:          # only inside [ ]
    name: str
    col: int


@dataclass(frozen=True, slots=True)
class Unary:
    op: str
    x: object
    col: int


@dataclass(frozen=True, slots=True)
class Bin:
    op: str
    left: object
    right: object
    col: int


_PREC = {"|": 1, "^": 2, "&": 3, "<<": 4, ">>": 4, "+": 5, "-": 5, "*": 6, "/": 6, "%": 6}


class _Cursor:
    """Reads tokens of one operand or directive argument."""

    def __init__(self, toks: list[Tok], where: SourceLine) -> None:
        self.toks = toks
        self.pos = 0
        self.where = where
        self.nodes = 0

    def peek(self, k: int = 0) -> Tok:
        toks = self.toks
        i = self.pos + k
        return toks[i] if i < len(toks) else toks[-1]

    def next(self) -> Tok:
        t = self.peek()
        if t.kind != "end":
            self.pos += 1
        return t

    def fail(self, at: Any, message: str) -> AsmError:
        """An error at ``at``: a token or an expression node (anything with a column)."""
        return _fail(self.where, at.col, message)

    def expect_end(self) -> None:
        t = self.peek()
        if t.kind != "end":
            raise self.fail(t, f"unexpected {t.show()}")

    # -- expression grammar: precedence climbing, C precedence ----------------
    def expr(self, regs: bool = False, min_prec: int = 1, depth: int = 0) -> object:
        left = self.unary(regs, depth)
        while True:
            t = self.peek()
            prec = _PREC.get(t.text) if t.kind == "op" else None
            if prec is None or prec < min_prec:
                return left
            self.next()
            self.count(t)
            right = self.expr(regs, prec + 1, depth + 1)
            left = Bin(t.text, left, right, t.col)

    def count(self, t: Tok) -> None:
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            raise self.fail(t, "expression too long")

    def unary(self, regs: bool, depth: int) -> object:
        if depth > _MAX_DEPTH:
            raise self.fail(self.peek(), "expression nested too deeply")
        t = self.peek()
        if t.kind == "op" and t.text in "-~+":
            self.next()
            self.count(t)
            return Unary(t.text, self.unary(regs, depth + 1), t.col)
        return self.primary(regs, depth)

    def primary(self, regs: bool, depth: int) -> object:
        t = self.next()
        if t.kind == "num":
            return Num(t.value, t.col)
        if t.kind == "ref":
            label, fwd = t.value
            return NumRef(label, fwd, t.col)
        if t.kind == "dot":
            return Dot(t.col)
        if t.kind == "id":
            low = t.text.lower()
            if low in GPR_BY_NAME or low == "rip":
                if regs:
                    return RegNode(low, t.col)
                raise self.fail(t, f"register '{t.text}' cannot be part of an expression")
            if low in _RESERVED:
                raise self.fail(t, f"unexpected '{t.text}'")
            return Sym(t.text, t.col)
        if t.is_op("("):
            inner = self.expr(regs, 1, depth + 1)
            close = self.next()
            if not close.is_op(")"):
                raise self.fail(close, f"expected ')' but found {close.show()}")
            return inner
        if t.kind == "end":
            raise self.fail(t, "expected an expression")
        if t.kind == "str":
            raise self.fail(t, "a string cannot be used as a number")
        raise self.fail(t, f"expected an expression but found {t.show()}")


def _has_reg(node: object) -> bool:
    if isinstance(node, RegNode):
        return True
    if isinstance(node, Unary):
        return _has_reg(node.x)
    if isinstance(node, Bin):
        return _has_reg(node.left) or _has_reg(node.right)
    return False


def _col(node: object) -> int:
    return node.col  # type: ignore[attr-defined]


# ============================================================== operands
@dataclass(frozen=True, slots=True)
class RegOp:
    num: int
    size: int
    name: str
    col: int
    kind = "r"


@dataclass(frozen=True, slots=True)
class CrOp:
    num: int
    name: str
    col: int
    kind = "c"


@dataclass(frozen=True, slots=True)
class MemOp:
    size: int | None            # from byte/word/dword/qword, else None
    base: RegNode | None
    index: RegNode | None
    scale: object | None        # expression node, or None for 1
    rip: bool
    terms: tuple                # ((sign, node), ...) the displacement
    col: int
    kind = "m"


@dataclass(frozen=True, slots=True)
class ImmOp:
    node: object
    col: int
    kind = "i"


def _split_commas(toks: list[Tok], where: SourceLine) -> list[list[Tok]]:
    """Split tokens at commas outside brackets; each part ends with an 'end' token."""
    parts: list[list[Tok]] = []
    cur: list[Tok] = []
    depth = 0
    for t in toks:
        if t.kind == "end" or (t.is_op(",") and depth == 0):
            if not cur:
                raise _fail(where, t.col, "missing operand")
            parts.append(cur + [Tok("end", "", t.col)])
            cur = []
            if t.kind == "end":
                break
            continue
        if t.kind == "op" and t.text in "([":
            depth += 1
        elif t.kind == "op" and t.text in ")]":
            depth -= 1
        cur.append(t)
    return parts


def parse_operand(toks: list[Tok], where: SourceLine) -> RegOp | CrOp | MemOp | ImmOp:
    cur = _Cursor(toks, where)
    first = cur.peek()
    size = None
    if first.kind == "id" and first.text.lower() in SIZE_BY_NAME:
        size = SIZE_BY_NAME[first.text.lower()]
        cur.next()
        if cur.peek().kind == "id" and cur.peek().text.lower() == "ptr":
            cur.next()
        if not cur.peek().is_op("["):
            raise cur.fail(cur.peek(), f"'{first.text}' must be followed by a memory operand [ ... ]")
    t = cur.peek()
    if t.is_op("["):
        return _parse_mem(cur, size, first.col)
    if t.kind == "id" and cur.peek(1).kind == "end":
        low = t.text.lower()
        if low in GPR_BY_NAME:
            num, rsize = GPR_BY_NAME[low]
            return RegOp(num, rsize, low, t.col)
        if low in CONTROL_REGS:
            return CrOp(CONTROL_REGS[low], low, t.col)
        if low == "rip":
            raise cur.fail(t, "rip can only be a memory base, as in [rip + label]")
    node = cur.expr()
    cur.expect_end()
    return ImmOp(node, first.col)


def _parse_mem(cur: _Cursor, size: int | None, col: int) -> MemOp:
    open_ = cur.next()
    if cur.peek().is_op("]"):
        raise cur.fail(cur.peek(), "empty memory operand")
    node = cur.expr(regs=True)
    close = cur.next()
    if not close.is_op("]"):
        raise cur.fail(close, f"expected ']' but found {close.show()}")
    cur.expect_end()
    terms: list[tuple[int, object]] = []
    regs: list[tuple[RegNode, object | None]] = []    # (register, explicit scale)
    _linearize(node, 1, terms, regs, cur)
    base = index = scale = None
    rip = False
    for reg, sc in regs:
        if reg.name == "rip":
            if len(regs) > 1 or sc is not None:
                raise cur.fail(reg, "rip cannot be scaled or combined with other registers")
            rip = True
            continue
        if GPR_BY_NAME[reg.name][1] != 8:
            raise cur.fail(reg, f"memory addresses use 64-bit registers, not '{reg.name}'")
    if not rip:
        scaled = [r for r in regs if r[1] is not None]
        if len(scaled) > 1:
            raise cur.fail(scaled[1][0], "only one register can be scaled")
        if len(regs) > 2:
            raise cur.fail(regs[2][0], "a memory operand has at most two registers")
        for reg, sc in regs:
            if sc is None and base is None:
                base = reg
            else:
                index, scale = reg, sc
    return MemOp(size, base, index, scale, rip, tuple(terms), col if size else open_.col)


def _linearize(node: object, sign: int, terms: list, regs: list, cur: _Cursor) -> None:
    """Flatten ``[a + b*4 - c]`` into registers (with scales) and signed constant terms."""
    if not _has_reg(node):
        terms.append((sign, node))
    elif isinstance(node, RegNode):
        if sign < 0:
            raise cur.fail(node, "a register cannot be subtracted")
        regs.append((node, None))
    elif isinstance(node, Bin) and node.op in "+-":
        _linearize(node.left, sign, terms, regs, cur)
        _linearize(node.right, sign if node.op == "+" else -sign, terms, regs, cur)
    elif isinstance(node, Bin) and node.op == "*" and RegNode in (type(node.left), type(node.right)):
        reg, sc = (node.left, node.right) if isinstance(node.left, RegNode) else (node.right, node.left)
        if _has_reg(sc):
            raise cur.fail(node, "registers cannot be multiplied together")
        if sign < 0:
            raise cur.fail(reg, "a register cannot be subtracted")
        regs.append((reg, sc))
    elif isinstance(node, Unary) and node.op in "+-":
        _linearize(node.x, sign if node.op == "+" else -sign, terms, regs, cur)
    else:
        raise cur.fail(node, "a memory operand is base + index*scale + displacement")


# ============================================================== line plans
class _Insn:
    """An x86 instruction line's parse: its mnemonic, table entry and operands."""
    __slots__ = ("mn", "info", "cond", "strsize", "rep", "ops", "shape", "has_ref", "pure", "encoded", "template")

    def __init__(self, mn: Tok, info: opcodes.OpInfo, cond: int | None, strsize: int | None, rep: bool,
                 ops: tuple, has_ref: bool) -> None:
        self.mn, self.info, self.cond, self.strsize, self.rep, self.ops = mn, info, cond, strsize, rep, ops
        self.shape = "".join(o.kind for o in ops)
        self.has_ref = has_ref           # names a numeric label (`1f`): its context counts them
        # Without an expression among its operands the encoding cannot depend on where the
        # line stands or on any symbol: pass 2 encodes it once and reuses the bytes.
        self.pure = not any(o.kind == "i" or (o.kind == "m" and (o.terms or o.scale is not None)) for o in ops)
        self.encoded: bytes | None = None
        self.template: _Template | None = None      # for the others, once built (see _Recorder)


class _LinePlan:
    """What a line says, apart from where it stands: its labels, then a directive, an
    ``=`` constant, an instruction or nothing. A plan is a pure function of the line's
    text (and of the instruction set it is read in), so it is made once per process and
    reused: the kernels include the same common files, and their lines come back in
    every image. Everything that depends on the line's place (scope, section, symbols,
    numeric label counts) is looked at when the plan is carried out."""
    __slots__ = ("labels", "kind", "head", "rest", "insn", "error", "args")

    def __init__(self, labels: tuple, kind: str, head: Tok | None = None, rest: tuple = (),
                 insn: _Insn | None = None, error: tuple[int, str] | None = None) -> None:
        self.labels = labels             # ((token, numeric), ...) in source order
        self.kind = kind                 # none, equ, directive, insn, a64 or error
        self.head = head                 # the directive's or constant's name token
        self.rest = rest                 # the tokens its handler reads
        self.insn = insn
        self.error = error               # (col, message): raised after the labels are defined
        self.args: list[list[Tok]] | None = None     # a directive's (or constant's) arguments, once split


#: A file's lines, by (name, text): a SourceLine is immutable, and images may share them.
_LINES: dict[tuple[str, str], tuple[SourceLine, ...]] = {}
_LINES_KEPT = 1_000


def _source_lines(name: str, text: str) -> tuple[SourceLine, ...]:
    key = (name, text)
    lines = _LINES.get(key)
    if lines is None:
        lines = tuple(SourceLine(name, i + 1, line.rstrip("\r")) for i, line in enumerate(text.split("\n")))
        if len(_LINES) >= _LINES_KEPT:
            _LINES.clear()
        _LINES[key] = lines
    return lines


#: A line's block keyword (lower case, with its span) and first word, by text (``Assembler._feed``).
_HEADS: dict[str, tuple[str, int, int, str]] = {}


def _line_head(text: str) -> tuple[str, int, int, str]:
    head = _HEADS.get(text)
    if head is None:
        m = _BLOCK_WORD.match(text)
        first = text.split(None, 1)
        name = first[0] if first else ""
        head = (m.group(1).lower(), m.start(1), m.end(1), name) if m else ("", 0, 0, name)
        if len(_HEADS) >= _PLANS_KEPT:
            _HEADS.clear()
        _HEADS[text] = head
    return head


#: Plans by (line text, arm); bounded, since macros and .rept make new lines.
_PLANS: dict[tuple[str, bool], _LinePlan] = {}
_PLANS_KEPT = 50_000


#: Expressions parsed before, by the identity of their token list, which the entry keeps
#: alive (so its id is not reused while the entry stands): a plan's argument lists come
#: back in every image, and the nodes are immutable.
_PARSED: dict[int, tuple[list[Tok], object]] = {}


def _parse_expr(toks: list[Tok], where: SourceLine) -> object:
    """A whole argument as one expression."""
    hit = _PARSED.get(id(toks))
    if hit is not None and hit[0] is toks:
        return hit[1]
    cur = _Cursor(toks, where)
    node = cur.expr()
    cur.expect_end()
    if len(_PARSED) >= _PLANS_KEPT:
        _PARSED.clear()
    _PARSED[id(toks)] = (toks, node)
    return node


def _line_plan(where: SourceLine, arm: bool) -> _LinePlan:
    key = (where.text, arm)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _make_plan(where, arm)         # a line the lexer rejects raises, and is not kept
        if len(_PLANS) >= _PLANS_KEPT:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


def _make_plan(where: SourceLine, arm: bool) -> _LinePlan:
    toks = _split_line(where.text, where, arm)
    labels = []
    i = 0
    while True:
        t, nxt = toks[i], toks[i + 1] if i + 1 < len(toks) else toks[-1]
        if t.kind == "id" and nxt.is_op(":"):
            labels.append((t, False))
        elif t.kind == "num" and t.text.isdigit() and nxt.is_op(":"):
            labels.append((t, True))
        else:
            break
        i += 2
    labels_ = tuple(labels)
    t = toks[i]
    rest = tuple(toks[i:])
    if t.kind == "end":
        return _LinePlan(labels_, "none")
    if t.kind == "id" and rest[1].is_op("="):
        return _LinePlan(labels_, "equ", t, rest[2:])
    if t.kind == "id" and t.text.startswith("."):
        return _LinePlan(labels_, "directive", t, rest[1:])
    if t.kind == "id":
        if arm:
            return _LinePlan(labels_, "a64", rest=rest)
        try:
            return _LinePlan(labels_, "insn", insn=_parse_instruction(list(rest), where))
        except AsmError as e:           # reported where the line stands, after its labels
            return _LinePlan(labels_, "error", error=(e.col, e.message))
    return _LinePlan(labels_, "error", error=(t.col, f"expected a label, directive or instruction but found "
                                                     f"{t.show()}"))


def _parse_instruction(toks: list[Tok], where: SourceLine) -> _Insn:
    cur = _Cursor(toks, where)
    mn = cur.next()
    rep = mn.text.lower() == "rep"
    if rep:
        mn = cur.next()
        if mn.kind != "id":
            raise cur.fail(mn, "rep must be followed by movsb, movsq, stosb or stosq")
    info, cond, strsize = _resolve(mn, where)
    if rep and strsize is None:
        raise cur.fail(mn, "rep can only prefix movsb, movsq, stosb or stosq")
    rest = toks[cur.pos:]
    ops = tuple(parse_operand(p, where) for p in _split_commas(rest, where)) if rest[0].kind != "end" else ()
    return _Insn(mn, info, cond, strsize, rep, ops, any(t.kind == "ref" for t in toks))


# ============================================================== sections, symbols
@dataclass(eq=False)
class _Sec:
    name: str
    order: int
    declared_at: SourceLine
    base: int | None = None          # set by .org, or after pass 1 for the others
    deferred: bool = False           # no .org before its first byte: placed after pass 1
    max_align: int = 1               # largest .align in a deferred section
    data: bytearray = field(default_factory=bytearray)
    code: bool = False
    placed_at: SourceLine | None = None

    @property
    def here(self) -> int:
        """The location counter: absolute once placed, else an offset from a page-aligned start."""
        return len(self.data) if self.base is None else self.base + len(self.data)


@dataclass(eq=False)
class _Sym:
    name: str
    kind: str                         # label, equ or extern (given by the caller)
    where: SourceLine | None
    sec: _Sec | None = None           # labels: section and offset in it
    offset: int = 0
    value: int | None = None          # extern value / cached equ value
    rel: int = 0
    expr: object = None               # equ: expression and its context
    ctx: _Ctx | None = None
    busy: bool = False


# _Ctx and _Item are named tuples: one of each per instruction, and a tuple is made
# several times faster than a frozen dataclass.
class _Ctx(NamedTuple):
    """Everything an expression on one line needs: where it is and what `.` means."""
    where: SourceLine
    scope: str | None                # the current global label (for .local names)
    sec: _Sec
    offset: int                      # `.` = sec.base + offset
    nums: dict | None                # numeric label counts when the line was read


class _Item(NamedTuple):
    kind: str                         # insn, data, a64, entry
    ctx: _Ctx
    args: tuple
    size: int = 0

    @property
    def addr(self) -> int:
        return self.ctx.sec.base + self.ctx.offset


# ============================================================== the assembler
class Assembler:
    def __init__(self, include_dirs: Iterable[Path | str] = (), symbols: Mapping[str, int] | None = None,
                 origin: int = DEFAULT_ORIGIN) -> None:
        self.include_dirs = [Path(d) for d in include_dirs]
        self.origin = origin
        self.sections: dict[str, _Sec] = {}
        self.placement: list[_Sec] = []      # sections in the order they got their first byte
        self.syms: dict[str, _Sym] = {}
        self.numeric: dict[str, list[_Sym]] = {}
        self.items: list[_Item] = []
        self.sources: dict[str, str] = {}
        self.include_stack: list[str] = []
        self.macros: dict[str, _Macro] = {}
        #: The .macro or .rept block being collected: [kind, header line, lines, nesting, detail]
        self._block: list | None = None
        self._expanded = 0                   # lines produced by .rept and macros so far
        self._expansions = 0                 # macro invocations so far (\@)
        self._macro_depth = 0
        self.scope: str | None = None
        self.entry_item: _Item | None = None
        #: The instruction set being assembled: "x86_64" (the default) or "arm64" (after .arch arm64).
        self.arch = "x86_64"
        for name, value in (symbols or {}).items():
            self.syms[name] = _Sym(name, "extern", None, value=value, rel=1)
        self.sec = self._section(".text", SourceLine("", 1, ""))

    # -- driver -------------------------------------------------------------
    def run(self, source: str, filename: str) -> Image:
        self._file(source, filename, os.path.realpath(filename))
        self._finish_layout()
        emit = {"insn": self._emit_insn, "data": self._emit_data, "a64": self._emit_a64}
        for item in self.items:
            emit[item.kind](item)
        return self._image()

    def _file(self, text: str, name: str, real: str) -> None:
        self.sources.setdefault(name, text)
        self.include_stack.append(real)
        for where in _source_lines(name, text):
            self._feed(where)
        if self._block is not None and len(self.include_stack) == 1:
            kind, start = self._block[0], self._block[1]
            raise _fail(start, 1, f"'.{kind}' has no '.end{'m' if kind == 'macro' else 'r'}'")
        self.include_stack.pop()

    # -- pass 1: .macro and .rept blocks, macro calls ---------------------------------
    def _feed(self, where: SourceLine) -> None:
        """One source line: collected into a block, expanded, or assembled."""
        word, start, after, name = _line_head(where.text)
        if self._block is not None:
            block = self._block
            if word in (".macro", ".rept"):
                block[3] += 1
            elif word in (".endm", ".endr"):
                block[3] -= 1
                if block[3] == 0:
                    if word != (".endm" if block[0] == "macro" else ".endr"):
                        raise _fail(where, start + 1, f"'{word}' closes a '.{block[0]}' block")
                    self._block = None
                    self._end_block(block, where)
                    return
            block[2].append(where)
            return
        if word == ".macro":
            self._start_macro(where, after)
        elif word == ".rept":
            toks = tokenize(where.text[after:], where)
            count = self._layout_value(toks, where) if toks[0].kind != "end" else None
            if count is None or count < 0:
                raise _fail(where, start + 1, ".rept takes a count of zero or more")
            self._block = ["rept", where, [], 1, count]
        elif word in (".endm", ".endr"):
            raise _fail(where, start + 1, f"'{word}' with no block open")
        else:
            if name in self.macros and not name.endswith(":"):
                self._call_macro(self.macros[name], where, where.text.lstrip()[len(name):])
            else:
                self._line(where)

    def _start_macro(self, where: SourceLine, after: int) -> None:
        spec = _strip_comment(where.text[after:]).strip()
        parts = spec.replace(",", " ").split()
        if not parts or not _MACRO_PARAM.match(parts[0]):
            raise _fail(where, after + 1, ".macro takes a name, then its parameters")
        name = parts[0]
        params: list[tuple[str, str | None]] = []
        if name in self.macros or name.lower() in opcodes.BY_NAME:
            raise _fail(where, after + 1, f"'{name}' is already a macro or an instruction")
        for p in parts[1:]:
            pname, eq, default = p.partition("=")
            if not _MACRO_PARAM.match(pname) or any(pname == q for q, _ in params):
                raise _fail(where, after + 1, f"bad or repeated macro parameter '{p}'")
            params.append((pname, default if eq else None))
        self._block = ["macro", where, [], 1, (name, params)]

    def _end_block(self, block: list, where: SourceLine) -> None:
        kind, start, lines, _, detail = block
        if kind == "macro":
            name, params = detail
            self.macros[name] = _Macro(name, params, lines, start)
            return
        if self._expanded + detail * len(lines) > _MAX_EXPANDED_LINES:
            raise _fail(start, 1, f"more than {_MAX_EXPANDED_LINES} lines from .rept and macros")
        for _ in range(detail):
            self._expand(lines, start)

    def _expand(self, lines: list[SourceLine], start: SourceLine) -> None:
        self._expanded += len(lines)
        if self._expanded > _MAX_EXPANDED_LINES:
            raise _fail(start, 1, f"more than {_MAX_EXPANDED_LINES} lines from .rept and macros")
        for line in lines:
            self._feed(line)

    def _call_macro(self, mac: _Macro, where: SourceLine, arg_text: str) -> None:
        args = _split_macro_args(_strip_comment(arg_text))
        if len(args) > len(mac.params):
            raise _fail(where, 1, f"macro '{mac.name}' takes {len(mac.params)} argument(s), not {len(args)}")
        values = {}
        for i, (pname, default) in enumerate(mac.params):
            given = args[i] if i < len(args) and args[i] != "" else None
            if given is None and default is None:
                raise _fail(where, 1, f"macro '{mac.name}': no value for parameter '{pname}'")
            values[pname] = given if given is not None else default
        if self._macro_depth >= _MAX_MACRO_DEPTH:
            raise _fail(where, 1, f"macros nested more than {_MAX_MACRO_DEPTH} deep")
        self._expansions += 1
        names = sorted(values, key=len, reverse=True)         # \ab before \a
        pattern = re.compile(r"\\(@|" + "|".join(re.escape(n) for n in names) + r")") if names else re.compile(r"\\(@)")
        counter = str(self._expansions)
        body = [SourceLine(line.file, line.line,
                           pattern.sub(lambda mm: counter if mm.group(1) == "@" else values[mm.group(1)], line.text))
                for line in mac.body]
        self._macro_depth += 1
        try:
            self._expand(body, where)
        finally:
            self._macro_depth -= 1

    # -- pass 1: one line -------------------------------------------------------
    def _line(self, where: SourceLine) -> None:
        plan = _line_plan(where, self.arch == "arm64")
        for tok, numeric in plan.labels:
            if numeric:
                self._numeric_label(tok, where)
            else:
                self._label(tok, where)
        kind = plan.kind
        if kind == "insn":
            self._instruction(plan.insn, where)
        elif kind == "directive":
            self._directive(plan, where)
        elif kind == "equ":
            if plan.args is None:
                plan.args = [list(plan.rest)]
            self._equ(plan.head, plan.args[0], where)
        elif kind == "a64":
            self._a64_instruction(list(plan.rest), where)
        elif kind == "error":
            raise _fail(where, *plan.error)

    def _ctx(self, where: SourceLine, toks: list[Tok] | None = None) -> _Ctx:
        nums = dict((k, len(v)) for k, v in self.numeric.items()) if toks and any(
            t.kind == "ref" for t in toks) else None
        return _Ctx(where, self.scope, self.sec, len(self.sec.data), nums)

    def _qualify(self, name: str, scope: str | None, where: SourceLine, col: int) -> str:
        if not name.startswith("."):
            return name
        if scope is None:
            raise _fail(where, col, f"local label '{name}' needs a global label before it")
        return scope + name

    def _define(self, tok: Tok, where: SourceLine, sym: _Sym) -> None:
        if tok.text.lower() in (a64_asm.RESERVED if self.arch == "arm64" else _RESERVED):
            raise _fail(where, tok.col, f"'{tok.text}' is a reserved word and cannot be a symbol")
        old = self.syms.get(sym.name)
        if old is not None:
            at = f" (first defined at {old.where.file}:{old.where.line})" if old.where else ""
            what = "label" if sym.kind == "label" else "symbol"
            raise _fail(where, tok.col, f"duplicate {what} '{sym.name}'{at}")
        self.syms[sym.name] = sym

    def _label(self, tok: Tok, where: SourceLine) -> None:
        name = self._qualify(tok.text, self.scope, where, tok.col)
        self._define(tok, where, _Sym(name, "label", where, self.sec, len(self.sec.data), rel=1))
        if not tok.text.startswith("."):
            self.scope = tok.text

    def _numeric_label(self, tok: Tok, where: SourceLine) -> None:
        key = _label_key(tok.text)
        self.numeric.setdefault(key, []).append(_Sym(key, "label", where, self.sec, len(self.sec.data), rel=1))

    def _equ(self, tok: Tok, expr_toks: list[Tok], where: SourceLine) -> None:
        node = _parse_expr(expr_toks, where)
        name = self._qualify(tok.text, self.scope, where, tok.col)
        self._define(tok, where, _Sym(name, "equ", where, expr=node, ctx=self._ctx(where, expr_toks)))

    # -- sections ---------------------------------------------------------------
    def _section(self, name: str, where: SourceLine) -> _Sec:
        sec = self.sections.get(name)
        if sec is None:
            sec = _Sec(name, len(self.sections), where, code=name == ".text" or name.startswith(".text."))
            self.sections[name] = sec
        return sec

    def _place(self, sec: _Sec, where: SourceLine, base: int | None = None) -> None:
        """Called at a section's first byte (or .org): fix its address now, or once sizes are known."""
        if sec.base is not None or sec.deferred:
            return
        sec.placed_at = where
        self.placement.append(sec)
        if base is None:
            # Placed after the previous section once that one has its final size, so
            # .text / .data / .text in one file do not collide.
            sec.deferred = True
        else:
            sec.base = base

    def _grow(self, n: int, where: SourceLine, col: int, fill: bytes = b"\0") -> None:
        sec = self.sec
        if n == 0:
            return
        self._place(sec, where)
        if len(sec.data) + n > MAX_SECTION:
            raise _fail(where, col, f"section '{sec.name}' would grow beyond {MAX_SECTION >> 20} MiB")
        if sec.base is not None and sec.base + len(sec.data) + n > 1 << 64:
            raise _fail(where, col, f"section '{sec.name}' runs past the end of the address space")
        sec.data += fill * n if len(fill) == 1 else fill    # else fill is all n bytes

    def _record(self, kind: str, ctx: _Ctx, size: int, args: tuple) -> _Item:
        item = _Item(kind, ctx, args, size)
        self.items.append(item)
        return item

    # -- pass 1: directives -------------------------------------------------------
    def _directive(self, plan: _LinePlan, where: SourceLine) -> None:
        tok = plan.head
        assert tok is not None
        handler = _DIRECTIVES.get(tok.text.lower())
        if handler is None:
            raise _fail(where, tok.col, f"unknown directive '{tok.text}'")
        args = plan.args
        if args is None:
            # Split once per line: the handlers only read their arguments.
            toks = list(plan.rest)
            args = plan.args = _split_commas(toks, where) if toks[0].kind != "end" else []
        handler(self, tok, args, where)

    def _args(self, tok: Tok, args: list, where: SourceLine, lo: int, hi: int) -> None:
        if not lo <= len(args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}" if hi < 99 else f"at least {lo}"
            col = args[hi][0].col if len(args) > hi else tok.col
            raise _fail(where, col, f"'{tok.text}' takes {want} argument{'s' if want != '1' else ''}")

    def _expr_arg(self, arg: list[Tok], where: SourceLine) -> object:
        return _parse_expr(arg, where)

    def _layout_value(self, arg: list[Tok], where: SourceLine) -> int:
        """Evaluate an argument that decides addresses: it may only use what is already known."""
        node = self._expr_arg(arg, where)
        value, _ = self._eval(node, self._ctx(where, arg), layout=True)
        return value

    def d_org(self, tok, args, where):
        self._args(tok, args, where, 1, 1)
        target = self._layout_value(args[0], where)
        col = args[0][0].col
        if not 0 <= target < 1 << 64:
            raise _fail(where, col, f".org address {_hex(target)} is outside the 64-bit address space")
        sec = self.sec
        if sec.deferred:
            raise _fail(where, tok.col, f"section '{sec.name}' already has contents placed after the previous "
                        "section; .org must come before its first byte")
        if sec.base is None:
            self._place(sec, where, target)
            return
        if target < sec.here:
            raise _fail(where, col, f".org cannot move backwards (from {sec.here:#x} to {target:#x})")
        self._grow(target - sec.here, where, col)

    def d_align(self, tok, args, where):
        self._args(tok, args, where, 1, 1)
        n = self._layout_value(args[0], where)
        col = args[0][0].col
        if n <= 0 or n & (n - 1):
            raise _fail(where, col, f"alignment must be a power of two, not {_hex(n)}")
        sec = self.sec
        if sec.base is None:
            # A section placed later starts aligned to its largest .align.
            sec.max_align = max(sec.max_align, n)
        start = sec.here
        pad = -start % n
        if pad > MAX_SECTION:
            raise _fail(where, col, f"section '{sec.name}' would grow beyond {MAX_SECTION >> 20} MiB")
        ctx = self._ctx(where)
        if sec.code and self.arch == "arm64" and n % A64_SIZE == 0:
            zeros = -start % A64_SIZE
            self._grow(zeros, where, col)
            nop = encode_a64(A64("nop")).to_bytes(A64_SIZE, "little")
            self._grow(pad - zeros, where, col, nop * ((pad - zeros) // A64_SIZE))
        elif sec.code and n % INSN_SIZE == 0:
            # Code is padded with whole nop slots, so it disassembles cleanly.
            zeros = -start % INSN_SIZE
            self._grow(zeros, where, col)
            nop = encode(Instruction(opcodes.BY_NAME["nop"].code, ""))
            self._grow(pad - zeros, where, col, nop * ((pad - zeros) // INSN_SIZE))
        else:
            self._grow(pad, where, col)
        self._record("data", ctx, pad, ())

    def _data(self, tok, args, where, width):
        self._args(tok, args, where, 1, 999)
        nodes = [self._expr_arg(a, where) for a in args]
        ctx = self._ctx(where, [t for a in args for t in a])
        self._grow(width * len(nodes), where, tok.col)
        self._record("data", ctx, width * len(nodes), (width, nodes, [a[0].col for a in args]))

    def d_byte(self, tok, args, where): self._data(tok, args, where, 1)
    def d_word(self, tok, args, where): self._data(tok, args, where, 2)
    def d_dword(self, tok, args, where): self._data(tok, args, where, 4)
    def d_quad(self, tok, args, where): self._data(tok, args, where, 8)

    def _ascii(self, tok, args, where, nul):
        self._args(tok, args, where, 1, 999)
        blob = bytearray()
        for a in args:
            if a[0].kind != "str" or a[1].kind != "end":
                raise _fail(where, a[0].col, f"'{tok.text}' takes quoted strings")
            blob += a[0].value + (b"\0" if nul else b"")
        ctx = self._ctx(where)
        self._grow(len(blob), where, tok.col, bytes(blob))
        self._record("data", ctx, len(blob), ())

    def d_ascii(self, tok, args, where): self._ascii(tok, args, where, False)
    def d_asciz(self, tok, args, where): self._ascii(tok, args, where, True)

    def d_space(self, tok, args, where):
        self._args(tok, args, where, 1, 1 if tok.text.lower() == ".zero" else 2)
        n = self._layout_value(args[0], where)
        if n < 0:
            raise _fail(where, args[0][0].col, f"negative size {_hex(n)}")
        fill = 0
        if len(args) == 2:
            fill = self._layout_value(args[1], where)
            if not -128 <= fill <= 255:
                raise _fail(where, args[1][0].col, f"fill value {_hex(fill)} does not fit in a byte")
        ctx = self._ctx(where)
        self._grow(n, where, args[0][0].col, bytes([fill & 0xFF]))
        self._record("data", ctx, n, ())

    def d_equ(self, tok, args, where):
        self._args(tok, args, where, 2, 2)
        name = args[0]
        if name[0].kind != "id" or name[1].kind != "end":
            raise _fail(where, name[0].col, "expected a symbol name")
        self._equ(name[0], args[1], where)

    def d_include(self, tok, args, where):
        self._args(tok, args, where, 1, 1)
        arg = args[0]
        if arg[0].kind != "str" or arg[1].kind != "end":
            raise _fail(where, arg[0].col, ".include takes a quoted file name")
        rel = arg[0].value.decode("utf-8", "replace")
        if not rel or "\0" in rel:
            raise _fail(where, arg[0].col, "bad include file name")
        here = os.path.dirname(where.file)
        candidates = [os.path.normpath(os.path.join(here, rel))]
        candidates += [os.path.normpath(os.path.join(str(d), rel)) for d in self.include_dirs]
        for cand in candidates:
            if sources.is_file(cand):
                break
        else:
            raise _fail(where, arg[0].col, f"cannot find include file '{rel}'")
        real = os.path.realpath(cand)
        if real in self.include_stack:
            raise _fail(where, arg[0].col, f"include cycle: '{rel}' is already being assembled")
        if len(self.include_stack) >= _MAX_INCLUDE_DEPTH:
            raise _fail(where, arg[0].col, "includes nested too deeply")
        try:
            text = sources.read_text(cand)
        except UnicodeDecodeError:
            raise _fail(where, arg[0].col, f"include file '{rel}' is not UTF-8 text") from None
        except OSError as e:
            raise _fail(where, arg[0].col, f"cannot read include file '{rel}': {e.strerror}") from None
        self._file(text, _shown_path(cand), real)

    def d_section(self, tok, args, where):
        self._args(tok, args, where, 1, 1)
        arg = args[0]
        if arg[0].kind not in ("id", "str") or arg[1].kind != "end":
            raise _fail(where, arg[0].col, "expected a section name")
        name = arg[0].text if arg[0].kind == "id" else arg[0].value.decode("utf-8", "replace")
        self.sec = self._section(name, where)

    def _shorthand(self, tok, args, where):
        self._args(tok, args, where, 0, 0)
        self.sec = self._section(tok.text.lower(), where)

    def d_global(self, tok, args, where):
        self._args(tok, args, where, 1, 999)
        for a in args:
            if a[0].kind != "id" or a[1].kind != "end":
                raise _fail(where, a[0].col, "expected a symbol name")

    def d_entry(self, tok, args, where):
        self._args(tok, args, where, 1, 1)
        if self.entry_item is not None:
            first = self.entry_item.ctx.where
            raise _fail(where, tok.col, f"the entry point is already set at {first.file}:{first.line}")
        node = self._expr_arg(args[0], where)
        self.entry_item = _Item("entry", self._ctx(where, args[0]), (node,))

    def d_arch(self, tok, args, where):
        self._args(tok, args, where, 1, 1)
        arg = args[0]
        name = arg[0].text.lower() if arg[0].kind == "id" and arg[1].kind == "end" else None
        if name not in ("arm64", "aarch64", "x86_64"):
            raise _fail(where, arg[0].col, "expected '.arch arm64' or '.arch x86_64'")
        if self.items and any(i.kind in ("insn", "a64") for i in self.items) and \
                self.arch != ("x86_64" if name == "x86_64" else "arm64"):
            raise _fail(where, tok.col, "'.arch' must come before the first instruction")
        self.arch = "x86_64" if name == "x86_64" else "arm64"

    # -- pass 1: instructions ----------------------------------------------------
    def _a64_instruction(self, toks: list[Tok], where: SourceLine) -> None:
        mn = toks[0]
        name = mn.text.lower()
        if name not in a64_asm.MNEMONICS:
            raise _fail(where, mn.col, f"unknown instruction '{mn.text}' (this file is .arch arm64)")
        rest = toks[1:]
        parts = _split_commas(rest, where) if rest[0].kind != "end" else []

        def expr_of(part: list[Tok]) -> object:
            cur = _Cursor(part + [Tok("end", "", part[-1].col + len(part[-1].text))], where)
            node = cur.expr()
            cur.expect_end()
            return node
        ops = a64_asm.parse_operands(parts, expr_of, where, _fail)
        self.sec.code = True
        self._place(self.sec, where)
        if self.sec.here % A64_SIZE:
            raise _fail(where, mn.col, "an A64 instruction must be 4-byte aligned; put '.align 4' before it")
        ctx = self._ctx(where, toks)
        self._grow(A64_SIZE, where, mn.col)
        self._record("a64", ctx, A64_SIZE, (name, mn.col, ops))

    def _instruction(self, insn: _Insn, where: SourceLine) -> None:
        sec = self.sec
        sec.code = True
        if sec.base is None and not sec.deferred:
            self._place(sec, where)
        offset = len(sec.data)
        here = offset if sec.base is None else sec.base + offset
        if here % INSN_SIZE:
            at = f"{here:#x}" if sec.base is not None else f"offset {here:#x} of section '{sec.name}'"
            raise _fail(where, insn.mn.col, f"instruction at {at} is not 16-byte aligned; put '.align 16' before it")
        nums = dict((k, len(v)) for k, v in self.numeric.items()) if insn.has_ref else None
        ctx = _Ctx(where, self.scope, sec, offset, nums)
        if offset + INSN_SIZE > MAX_SECTION or here + INSN_SIZE > 1 << 64:
            self._grow(INSN_SIZE, where, insn.mn.col)        # says which limit
        sec.data += _EMPTY_SLOT
        self.items.append(_Item("insn", ctx, (insn,), INSN_SIZE))

    # -- between the passes --------------------------------------------------------
    def _finish_layout(self) -> None:
        """Place the sections that had no .org, then check that no two overlap."""
        for sec in self.sections.values():
            if sec.base is None and not sec.deferred:     # never got a byte: place it anyway, empty
                self._place(sec, sec.declared_at)
        prev: _Sec | None = None
        for sec in self.placement:
            if sec.deferred:
                start = self.origin if prev is None else prev.base + len(prev.data)
                align = max(PAGE, sec.max_align)
                sec.base = -(-start // align) * align
            if sec.base + len(sec.data) > 1 << 64:
                w = sec.placed_at
                raise AsmError(w.file, w.line, 1, f"section '{sec.name}' runs past the end of the address space")
            prev = sec
        placed = sorted((s for s in self.placement if s.data), key=lambda s: (s.base, s.order))
        for a, b in zip(placed, placed[1:]):
            if b.base < a.base + len(a.data):
                w = max(a, b, key=lambda s: self.placement.index(s)).placed_at
                raise AsmError(w.file, w.line, 1,
                               f"section '{b.name}' ({b.base:#x}-{b.base + len(b.data) - 1:#x}) overlaps section "
                               f"'{a.name}' ({a.base:#x}-{a.base + len(a.data) - 1:#x}); move one with .org")

    # -- expressions ----------------------------------------------------------------
    def _eval(self, node: object, ctx: _Ctx, layout: bool = False) -> tuple[int, int]:
        """Value of an expression and how many addresses it holds (1 for `label + 4`)."""
        try:
            return self._ev(node, ctx, layout, 0)
        except RecursionError:
            raise _fail(ctx.where, _col(node), "expression too deeply nested") from None

    def _ev(self, node: object, ctx: _Ctx, layout: bool, depth: int) -> tuple[int, int]:
        if isinstance(node, Num):
            return node.value, 0
        if isinstance(node, Sym):
            return self._sym_value(node, ctx, layout, depth)
        if isinstance(node, NumRef):
            return self._numref_value(node, ctx, layout)
        if isinstance(node, Dot):
            if ctx.sec.base is None:
                raise _fail(ctx.where, node.col, f"the address '.' is not known yet: section '{ctx.sec.name}' "
                            "is placed after the whole source is read (give it an .org)")
            return ctx.sec.base + ctx.offset, 1
        if isinstance(node, Unary):
            v, r = self._ev(node.x, ctx, layout, depth)
            return (-v, -r) if node.op == "-" else (~v, 0) if node.op == "~" else (v, r)
        assert isinstance(node, Bin)
        a, ra = self._ev(node.left, ctx, layout, depth)
        b, rb = self._ev(node.right, ctx, layout, depth)
        op = node.op
        if op == "+":
            return a + b, ra + rb
        if op == "-":
            return a - b, ra - rb
        if op in "/%":
            if b == 0:
                raise _fail(ctx.where, node.col, "division by zero")
            q = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)   # C: truncate toward zero
            return (q if op == "/" else a - q * b), 0
        if op in ("<<", ">>"):
            if b < 0 or b > _MAX_SHIFT:
                raise _fail(ctx.where, node.col, f"shift count {_hex(b)} is out of range")
            return (a << b if op == "<<" else a >> b), 0
        if op == "*":
            if a.bit_length() + b.bit_length() > 4096:
                raise _fail(ctx.where, node.col, "number too large")
            return a * b, 0
        return {"&": a & b, "|": a | b, "^": a ^ b}[op], 0

    def _sym_value(self, node: Sym, ctx: _Ctx, layout: bool, depth: int) -> tuple[int, int]:
        name = self._qualify(node.name, ctx.scope, ctx.where, node.col)
        sym = self.syms.get(name)
        if sym is None:
            # Pass 1 defines symbols in source order, so during layout "missing" means "later".
            if layout:
                raise _fail(ctx.where, node.col, f"'{node.name}' must be defined before this line "
                            f"(it decides where things go)")
            raise _fail(ctx.where, node.col, f"undefined symbol '{node.name}'")
        if sym.kind == "extern":
            return sym.value, sym.rel
        if sym.kind == "label":
            if sym.sec.base is None:
                raise _fail(ctx.where, node.col, f"the address of '{node.name}' is not known yet: section "
                            f"'{sym.sec.name}' is placed after the whole source is read (give it an .org)")
            return sym.sec.base + sym.offset, 1
        if sym.value is not None:
            return sym.value, sym.rel
        if sym.busy:
            raise _fail(ctx.where, node.col, f"symbol '{node.name}' is defined in terms of itself")
        if depth > _MAX_DEPTH:
            raise _fail(ctx.where, node.col, f"symbol '{node.name}' is defined through too many other symbols")
        sym.busy = True
        try:
            value, rel = self._ev(sym.expr, sym.ctx, layout, depth + 1)
        finally:
            sym.busy = False
        sym.value, sym.rel = value, rel
        return value, rel

    def _numref_value(self, node: NumRef, ctx: _Ctx, layout: bool) -> tuple[int, int]:
        defs = self.numeric.get(node.label, [])
        seen = (ctx.nums or {}).get(node.label, 0)
        idx = seen if node.forward else seen - 1
        if idx < 0:
            raise _fail(ctx.where, node.col, f"no label '{node.label}:' before this line")
        if idx >= len(defs):
            if layout:
                raise _fail(ctx.where, node.col, f"'{node.label}f' must be defined before this line "
                            f"(it decides where things go)")
            raise _fail(ctx.where, node.col, f"no label '{node.label}:' after this line")
        sym = defs[idx]
        if sym.sec.base is None:
            ref = node.label + ("f" if node.forward else "b")
            raise _fail(ctx.where, node.col, f"the address of '{ref}' is not known yet: section "
                        f"'{sym.sec.name}' is placed after the whole source is read (give it an .org)")
        return sym.sec.base + sym.offset, 1

    def value(self, node: object, ctx: _Ctx, regish: bool = False) -> int:
        """Evaluate an operand; a bare undefined name that looks like a register is reported as one."""
        if regish and isinstance(node, Sym) and node.name not in self.syms and _REGISH.fullmatch(node.name):
            raise _fail(ctx.where, node.col, _unknown_register(node.name))
        return self._eval(node, ctx)[0]

    # -- pass 2 ------------------------------------------------------------------------
    def _emit_data(self, item: _Item) -> None:
        if not item.args:
            return
        width, nodes, cols = item.args
        bits = 8 * width
        out = bytearray()
        for node, col in zip(nodes, cols):
            v = self.value(node, item.ctx)
            if not -(1 << (bits - 1)) <= v < 1 << bits:
                raise _fail(item.ctx.where, col, f"value {_hex(v)} does not fit in {_WIDTH_NAMES[width]}")
            out += (v & ((1 << bits) - 1)).to_bytes(width, "little")
        self._write(item, bytes(out))

    def _emit_insn(self, item: _Item) -> None:
        insn: _Insn = item.args[0]
        data = insn.encoded
        if data is None:
            template = insn.template
            if template is not None:
                data = template.rebuild(_Builder(self, item))
            else:
                recorder = _Recorder(self, item)
                built = recorder.build()
                data = encode(built)
                if insn.pure:
                    insn.encoded = data
                else:
                    insn.template = recorder.template(built, data)
        self._write(item, data)

    def _emit_a64(self, item: _Item) -> None:
        name, col, ops = item.args
        where = item.ctx.where
        builder = a64_asm.Builder(name, col, ops, lambda node: self.value(node, item.ctx), item.addr,
                                  lambda c, message: _fail(where, c, message))
        insn = builder.build()
        try:
            word = encode_a64(insn)
        except ValueError as e:
            raise _fail(where, col, str(e)) from None
        self._write(item, word.to_bytes(4, "little"))

    def _write(self, item: _Item, data: bytes) -> None:
        sec = item.ctx.sec
        sec.data[item.ctx.offset:item.ctx.offset + len(data)] = data

    def _image(self) -> Image:
        img = Image(sources=dict(self.sources), arch=self.arch)
        for sec in self.placement:          # source order of each section's first byte
            if sec.data:
                img.sections.append(Section(sec.name, sec.base, sec.data))
        for name, sym in self.syms.items():
            if sym.kind == "label":
                img.symbols[name] = sym.sec.base + sym.offset
                img.label_names.add(name)
            elif sym.kind == "equ":
                # Constants nobody used are still checked: the image lists every value.
                img.symbols[name] = self._sym_value(Sym(name, 1), sym.ctx, False, 0)[0]
        line_map, sizes, instructions = img.line_map, img.item_sizes, img.instructions
        for item in self.items:
            size = item.size
            if size:
                ctx = item.ctx
                addr = ctx.sec.base + ctx.offset
                if addr not in line_map:
                    line_map[addr] = ctx.where
                    sizes[addr] = size
                    if item.kind in ("insn", "a64"):
                        instructions.add(addr)
        img.line_map = dict(sorted(line_map.items()))
        if self.entry_item is not None:
            img.entry = self.value(self.entry_item.args[0], self.entry_item.ctx) & M64
        elif "_start" in img.symbols:
            img.entry = img.symbols["_start"] & M64
        elif img.sections:
            img.entry = img.sections[0].base
        return img


_WIDTH_NAMES = {1: "a byte", 2: "a word", 4: "a dword", 8: "a qword"}

_DIRECTIVES: dict[str, Callable] = {
    ".org": Assembler.d_org, ".align": Assembler.d_align,
    ".byte": Assembler.d_byte, ".word": Assembler.d_word, ".dword": Assembler.d_dword, ".quad": Assembler.d_quad,
    ".ascii": Assembler.d_ascii, ".asciz": Assembler.d_asciz,
    ".space": Assembler.d_space, ".zero": Assembler.d_space,
    ".equ": Assembler.d_equ, ".include": Assembler.d_include,
    ".section": Assembler.d_section, ".text": Assembler._shorthand, ".data": Assembler._shorthand,
    ".rodata": Assembler._shorthand, ".bss": Assembler._shorthand,
    ".global": Assembler.d_global, ".globl": Assembler.d_global, ".entry": Assembler.d_entry,
    ".arch": Assembler.d_arch,
}


def _shown_path(path: str) -> str:
    """A file name for messages and the image: relative to the working directory when inside it."""
    if os.path.isabs(path):
        try:
            rel = os.path.relpath(path)
        except ValueError:          # another drive
            return path
        if not rel.startswith(os.pardir):
            return rel
    return path


def _unknown_register(name: str) -> str:
    if re.fullmatch(r"[a-d]h", name, re.I):
        return f"unknown register '{name}' (the high-byte registers ah, bh, ch, dh are not in this ISA)"
    return f"unknown register '{name}'"


_PREFIXES_LONGEST_FIRST = sorted(opcodes.CONDITIONAL_PREFIXES, key=len, reverse=True)


def _resolve(mn: Tok, where: SourceLine) -> tuple[opcodes.OpInfo, int | None, int | None]:
    """A spelling to (table entry, condition code, string size)."""
    name = mn.text.lower()
    if name in opcodes.STRING_SPELLINGS:
        base, size = opcodes.STRING_SPELLINGS[name]
        return opcodes.BY_NAME[base], None, size
    if name in opcodes.BY_NAME and name not in _INTERNAL:
        return opcodes.BY_NAME[name], None, None
    for prefix in _PREFIXES_LONGEST_FIRST:
        if name.startswith(prefix) and name[len(prefix):] in opcodes.CONDITIONS:
            return opcodes.BY_NAME[opcodes.CONDITIONAL_PREFIXES[prefix]], opcodes.CONDITIONS[name[len(prefix):]], None
    raise _fail(where, mn.col, f"unknown instruction '{mn.text}'")


# ============================================================== instruction builder
_KIND_WORDS = {"r": "register", "m": "memory", "i": "immediate", "c": "control register"}
_ALU = {"add", "or", "adc", "sbb", "and", "sub", "xor", "cmp", "test"}
_UNARY = {"inc", "dec", "neg", "not", "mul", "div", "idiv"}
_SHIFTS = {"shl", "shr", "sar", "rol", "ror"}
_DESCRIPTORS = {"invlpg", "lidt", "lgdt"}


def _describe(shape: str) -> str:
    return "(" + ", ".join(_KIND_WORDS[k] for k in shape) + ")" if shape else "no operands"


class _Builder:
    """Turns one parsed instruction line into an :class:`Instruction` (pass 2)."""

    def __init__(self, asm: Assembler, item: _Item) -> None:
        self.asm = asm
        self.ctx = item.ctx
        self.addr = item.addr
        insn: _Insn = item.args[0]
        self.mn, self.info, self.cond, self.strsize, self.rep = insn.mn, insn.info, insn.cond, insn.strsize, insn.rep
        self.ops = insn.ops
        self.shape = insn.shape
        self.op = self.info.code

    def fail(self, col: int, message: str) -> AsmError:
        return _fail(self.ctx.where, col, message)

    def build(self) -> Instruction:
        name = self.info.name
        if self.strsize is not None:
            self.count(0)
            return Instruction(self.op, "", self.strsize, aux=int(self.rep))
        if self.info.forms == ("",):
            self.count(0)
            return Instruction(self.op, "")
        if name in _ALU:
            return self.data_op()
        if name in _UNARY:
            return self.unary()
        if name in _SHIFTS:
            return self.shift()
        if name in _DESCRIPTORS:
            self.count(1)
            self.check_form(("m",))
            return Instruction(self.op, "m", 8, mem=self.mem(self.ops[0]))
        return getattr(self, "b_" + name)()

    # -- checks --------------------------------------------------------------------
    def count(self, *allowed: int) -> None:
        n = len(self.ops)
        if n in allowed:
            return
        if len(allowed) == 1:
            want = {0: "no operands", 1: "1 operand"}.get(allowed[0], f"{allowed[0]} operands")
        else:
            want = ", ".join(map(str, allowed[:-1])) + f" or {allowed[-1]} operands"
        col = self.ops[max(allowed)].col if n > max(allowed) else self.mn.col
        raise self.fail(col, f"'{self.mn.text}' takes {want}")

    def check_form(self, forms: tuple[str, ...]) -> None:
        shape = self.shape
        if shape in forms:
            return
        for o in self.ops:
            if o.kind == "i" and isinstance(o.node, Sym) and _REGISH.fullmatch(o.node.name) \
                    and o.node.name not in self.asm.syms:
                raise self.fail(o.col, _unknown_register(o.node.name))
            if o.kind == "c":
                raise self.fail(o.col, "control registers can only be moved to or from a 64-bit register "
                                "with mov")
        k = 0
        while k < len(shape) and any(f.startswith(shape[:k + 1]) for f in forms):
            k += 1
        col = self.ops[k].col if k < len(shape) else self.mn.col
        takes = ", ".join(_describe(f) for f in forms)
        raise self.fail(col, f"'{self.mn.text}' cannot take {_describe(shape)}; it takes {takes}")

    def size_of(self, ops: Sequence) -> int:
        """The operand size the registers and size keywords agree on."""
        known = [o for o in ops if o.kind == "r" or (o.kind == "m" and o.size)]
        if not known:
            m = next(o for o in ops if o.kind == "m")
            raise self.fail(m.col, "operand size is ambiguous; say byte, word, dword or qword")
        first = known[0]
        for o in known[1:]:
            if o.size != first.size:
                raise self.fail(o.col, f"operand size mismatch: {_sized(first)} but {_sized(o)}")
        return first.size

    # -- operand values --------------------------------------------------------------
    def mem(self, o: MemOp) -> Mem:
        disp = rel = 0
        for sign, node in o.terms:
            typo = _register_typo(node, self.asm.syms)
            if typo is not None:
                raise self.fail(typo.col, _unknown_register(typo.name))
            v, r = self.asm._eval(node, self.ctx)
            disp += sign * v
            rel += sign * r
        if o.rip:
            if rel == 1:
                # [rip + label]: the displacement is the distance from the next instruction.
                disp = _signed64(disp - (self.addr + INSN_SIZE))
            elif rel != 0:
                raise self.fail(o.col, "a rip-relative operand names one address, as in [rip + label]")
            if not _fits_s32(disp):
                raise self.fail(o.col, "rip-relative target is more than 2 GiB away" if rel else
                                "displacement does not fit in 32 bits")
            return Mem(RIP_BASE, None, 1, disp)
        if 1 << 63 <= disp < 1 << 64:
            disp -= 1 << 64          # the CPU sign-extends the displacement
        if not _fits_s32(disp):
            if rel:
                raise self.fail(o.col, f"address {disp & M64:#x} does not fit in a 32-bit displacement; "
                                "use [rip + label]")
            raise self.fail(o.col, "displacement does not fit in 32 bits")
        scale = 1
        if o.scale is not None:
            scale = self.asm.value(o.scale, self.ctx)
            if scale not in (1, 2, 4, 8):
                raise self.fail(_col(o.scale), "scale must be 1, 2, 4 or 8")
        base = GPR_BY_NAME[o.base.name][0] if o.base else None
        index = GPR_BY_NAME[o.index.name][0] if o.index else None
        return Mem(base, index, scale if index is not None else 1, disp)

    def imm(self, o: ImmOp, size: int, wide: bool = False) -> int:
        """A data immediate at operand ``size``; only ``mov r64, imm`` may need 64 bits."""
        v = self.asm.value(o.node, self.ctx, regish=True)
        if size == 8:
            if not -(1 << 63) <= v < 1 << 64:
                raise self.fail(o.col, "immediate does not fit in 64 bits")
            if v >= 1 << 63:
                v -= 1 << 64
            if not wide and not _fits_s32(v):
                raise self.fail(o.col, "immediate does not fit in 32 bits")
            return v
        bits = 8 * size
        if not -(1 << (bits - 1)) <= v < 1 << bits:
            raise self.fail(o.col, f"immediate does not fit in {bits} bits")
        if size == 4 and v >= 1 << 31:
            v -= 1 << 32             # 0xFFFFFFFF for a dword is -1 in the signed 32-bit field
        return v

    def uimm(self, o: ImmOp, hi: int, what: str, hint: str = "") -> int:
        v = self.asm.value(o.node, self.ctx)
        if not 0 <= v <= hi:
            raise self.fail(o.col, f"{what} must be 0-{hi}{hint}, not {_hex(v)}")
        return v

    def target(self, o: ImmOp) -> int:
        v = self.asm.value(o.node, self.ctx, regish=self.info.name in ("jmp", "call"))
        if not -(1 << 63) <= v < 1 << 64:
            raise self.fail(o.col, f"branch target {_hex(v)} is outside the address space")
        off = _signed64(v - (self.addr + INSN_SIZE))
        if not _fits_s32(off):
            raise self.fail(o.col, f"branch target {v & M64:#x} is out of range (more than 2 GiB away)")
        return off

    def fields(self, size: int, imm: int | None = None, aux: int = 0, form: str | None = None) -> Instruction:
        """The common layout: a and b from register operands 0 and 1, mem from the memory operand."""
        ops = self.ops
        a = ops[0].num if ops and ops[0].kind == "r" else 0
        b = ops[1].num if len(ops) > 1 and ops[1].kind == "r" else 0
        mem = next((self.mem(o) for o in ops if o.kind == "m"), None)
        return Instruction(self.op, form if form is not None else self.shape, size, a, b, mem, imm, aux)

    # -- families --------------------------------------------------------------------
    def data_op(self, wide: bool = False) -> Instruction:
        self.count(2)
        if self.info.name == "test" and self.shape == "rm":
            self.ops = (self.ops[1], self.ops[0])      # test is symmetric; the table has mr
            self.shape = "mr"
        self.check_form(self.info.forms)
        size = self.size_of(self.ops)
        imm = self.imm(self.ops[1], size, wide and self.shape == "ri") if self.shape[1] == "i" else None
        return self.fields(size, imm)

    def unary(self) -> Instruction:
        self.count(1)
        self.check_form(("r", "m"))
        return self.fields(self.size_of(self.ops))

    def shift(self) -> Instruction:
        self.count(2)
        self.check_form(self.info.forms)
        dst, cnt = self.ops
        size = self.size_of([dst])
        if cnt.kind == "r":
            if (cnt.num, cnt.size) != (1, 1):
                raise self.fail(cnt.col, "the shift count register must be cl")
            return self.fields(size)
        return self.fields(size, self.uimm(cnt, 255, "shift count"))

    # -- one instruction at a time ---------------------------------------------------
    def b_mov(self) -> Instruction:
        self.count(2)
        shape = self.shape
        if "c" not in shape:
            return self.data_op(wide=True)
        dst, src = self.ops
        if shape == "cr" and src.size == 8:
            return Instruction(opcodes.BY_NAME["movtocr"].code, "rr", 8, dst.num, src.num)
        if shape == "rc" and dst.size == 8:
            return Instruction(opcodes.BY_NAME["movfromcr"].code, "rr", 8, dst.num, src.num)
        bad = next((o for o in self.ops if o.kind != "c"), src)
        raise self.fail(bad.col, "control registers move only to or from a 64-bit register")

    def b_xchg(self) -> Instruction:
        return self.data_op()

    def b_movzx(self) -> Instruction:
        return self.extend((1, 2), "a byte or word")

    def b_movsx(self) -> Instruction:
        return self.extend((1, 2, 4), "a byte, word or dword")

    def extend(self, sizes: tuple[int, ...], words: str) -> Instruction:
        self.count(2)
        self.check_form(self.info.forms)
        dst, src = self.ops
        ssize = src.size
        if ssize is None:
            raise self.fail(src.col, "operand size is ambiguous; say byte, word, dword or qword")
        if ssize not in sizes:
            raise self.fail(src.col, f"'{self.mn.text}' takes {words} source")
        if dst.size <= ssize:
            raise self.fail(dst.col, f"'{self.mn.text}' needs a destination wider than its source")
        return self.fields(dst.size, aux=ssize)

    def b_lea(self) -> Instruction:
        self.count(2)
        self.check_form(self.info.forms)
        if self.ops[0].size == 1:
            raise self.fail(self.ops[0].col, "lea needs a 16, 32 or 64-bit destination")
        return self.fields(self.ops[0].size)

    def b_push(self) -> Instruction:
        self.count(1)
        self.check_form(self.info.forms)
        o = self.ops[0]
        if o.kind == "i":
            return self.fields(8, self.imm(o, 8))
        if o.size not in (None, 8):
            raise self.fail(o.col, f"'{self.mn.text}' moves 64-bit values; use a 64-bit register or qword")
        return self.fields(8)

    b_pop = b_push

    def b_imul(self) -> Instruction:
        self.count(1, 2, 3)
        if len(self.ops) == 1:
            return self.unary()
        self.check_form(("rr", "rm", "rri", "rmi"))
        size = self.size_of(self.ops[:2])
        if size == 1:
            raise self.fail(self.ops[0].col, "imul with two or three operands needs 16, 32 or 64-bit operands")
        imm = self.imm(self.ops[2], size) if len(self.ops) == 3 else None
        return self.fields(size, imm)

    def b_jmp(self) -> Instruction:
        self.count(1)
        self.check_form(self.info.forms)
        o = self.ops[0]
        if o.kind == "i":
            return self.fields(8, self.target(o))
        if o.size not in (None, 8):
            raise self.fail(o.col, f"'{self.mn.text}' needs a 64-bit register or a qword in memory")
        return self.fields(8)

    b_call = b_jmp

    def b_jcc(self) -> Instruction:
        self.count(1)
        self.check_form(self.info.forms)
        return self.fields(8, self.target(self.ops[0]), aux=self.cond)

    def b_setcc(self) -> Instruction:
        self.count(1)
        self.check_form(self.info.forms)
        o = self.ops[0]
        if o.size not in (None, 1):
            raise self.fail(o.col, f"'{self.mn.text}' writes one byte: use an 8-bit register such as al, or byte")
        return self.fields(1, aux=self.cond)

    def b_cmovcc(self) -> Instruction:
        self.count(2)
        self.check_form(self.info.forms)
        size = self.size_of(self.ops)
        if size == 1:
            raise self.fail(self.ops[0].col, f"'{self.mn.text}' needs 16, 32 or 64-bit operands")
        return self.fields(size, aux=self.cond)

    def b_ret(self) -> Instruction:
        self.count(0, 1)
        if not self.ops:
            return Instruction(self.op, "")
        self.check_form(self.info.forms)
        return self.fields(8, self.uimm(self.ops[0], 0xFFFF, "the number of bytes to pop"))

    def b_int(self) -> Instruction:
        self.count(1)
        self.check_form(self.info.forms)
        return self.fields(8, self.uimm(self.ops[0], 255, "the interrupt vector"))

    def port_data(self, o) -> int:
        if o.kind != "r" or o.num != 0 or o.size == 8:
            raise self.fail(o.col, "the data register of in/out must be al, ax or eax")
        return o.size

    def port_number(self, o: ImmOp) -> int:
        return self.uimm(o, 255, "the port number", " (use dx for larger ports)")

    def port_reg(self, o) -> None:
        if (o.num, o.size) != (2, 2):
            raise self.fail(o.col, "the port register must be dx")

    def b_in(self) -> Instruction:
        self.count(2)
        self.check_form(self.info.forms)
        data, port = self.ops
        size = self.port_data(data)
        if port.kind == "r":
            self.port_reg(port)
            return Instruction(self.op, "rr", size, 0, 2)
        return Instruction(self.op, "ri", size, imm=self.port_number(port))

    def b_out(self) -> Instruction:
        self.count(2)
        self.check_form(self.info.forms)
        port, data = self.ops
        size = self.port_data(data)
        if port.kind == "r":
            self.port_reg(port)
            return Instruction(self.op, "rr", size, 2, 0)
        return Instruction(self.op, "ir", size, imm=self.port_number(port))

    def b_ltr(self) -> Instruction:
        self.count(1)
        self.check_form(self.info.forms)
        if self.ops[0].size != 2:
            raise self.fail(self.ops[0].col, "ltr takes a 16-bit selector register such as ax")
        return self.fields(2)


class _Template:
    """How to build an instruction line again: only its operand evaluations.

    Everything else a build checks and derives (operand count, forms, sizes, registers,
    condition) depends on the line's text alone, and passed the first time; an operand's
    value depends on where the line stands. So the next build of the same line redoes
    those evaluations, in the same order and through the same code (any mistake they find
    is reported exactly as before), and puts their results in the first build's place.
    """
    __slots__ = ("steps", "base", "head")

    def __init__(self, steps: tuple, base: Instruction, encoded: bytes) -> None:
        self.steps = steps              # ((method, args, is_mem), ...) in the order first made
        self.base = base
        # The eight head bytes (opcode, form, registers, base, index, scale, aux) stay as
        # they are while the scale does and the immediate needs no 64-bit form.
        self.head = encoded[:8] if not encoded[1] & 0x40 else None

    def rebuild(self, builder: _Builder) -> bytes:
        base = self.base
        mem, imm = base.mem, base.imm
        for method, args, is_mem in self.steps:
            if is_mem:
                mem = method(builder, *args)
            else:
                imm = method(builder, *args)
        head = self.head
        if head is not None and (imm is None or -(1 << 31) <= imm < 1 << 31) and \
                (mem is None or mem.scale == base.mem.scale):     # type: ignore[union-attr]
            # mem() has checked that the displacement fits in 32 bits
            return head + _DISP_IMM.pack(0 if mem is None else mem.disp, imm or 0)
        return encode(Instruction(base.op, base.form, base.size, base.a, base.b, mem, imm, base.aux))


class _Recorder(_Builder):
    """A builder that notes its operand evaluations, to make the line's :class:`_Template`."""

    def __init__(self, asm: Assembler, item: _Item) -> None:
        super().__init__(asm, item)
        self.steps: list[tuple[Callable, tuple, bool, Any]] = []

    def mem(self, o: MemOp) -> Mem:
        value = super().mem(o)
        self.steps.append((_Builder.mem, (o,), True, value))
        return value

    def imm(self, o: ImmOp, size: int, wide: bool = False) -> int:
        value = super().imm(o, size, wide)
        self.steps.append((_Builder.imm, (o, size, wide), False, value))
        return value

    def uimm(self, o: ImmOp, hi: int, what: str, hint: str = "") -> int:
        value = super().uimm(o, hi, what, hint)
        self.steps.append((_Builder.uimm, (o, hi, what, hint), False, value))
        return value

    def target(self, o: ImmOp) -> int:
        value = super().target(o)
        self.steps.append((_Builder.target, (o,), False, value))
        return value

    def template(self, built: Instruction, encoded: bytes) -> _Template | None:
        """The template, if the built instruction is its evaluations' results in fixed fields."""
        mems = [s for s in self.steps if s[2]]
        imms = [s for s in self.steps if not s[2]]
        if len(mems) > 1 or len(imms) > 1:
            return None
        if mems and built.mem is not mems[0][3] or imms and built.imm is not imms[0][3]:
            return None
        return _Template(tuple(s[:3] for s in self.steps), built, encoded)


def _register_typo(node: object, syms: dict) -> Sym | None:
    """An undefined name inside [ ] that looks like a register (say `rxx`)."""
    if isinstance(node, Sym):
        return node if node.name not in syms and _REGISH.fullmatch(node.name) else None
    if isinstance(node, Unary):
        return _register_typo(node.x, syms)
    if isinstance(node, Bin):
        return _register_typo(node.left, syms) or _register_typo(node.right, syms)
    return None


def _sized(o) -> str:
    if o.kind == "r":
        return f"{o.name} is {SIZE_NAMES[o.size]}"
    return f"the memory operand is {SIZE_NAMES[o.size]}"


# ============================================================== public API
def assemble(source: str, filename: str, include_dirs: Iterable[Path | str] = (), *,
             symbols: Mapping[str, int] | None = None) -> Image:
    """Assemble ``source`` (read from ``filename``, used in messages and for .include)."""
    return Assembler(include_dirs, symbols).run(source, str(filename))


def assemble_file(path: Path | str, include_dirs: Iterable[Path | str] = ()) -> Image:
    """Assemble a file; .include looks beside each file, then in ``include_dirs``."""
    path = str(path)
    try:
        raw = sources.read_bytes(path)
    except OSError as e:
        raise AsmError(path, 1, 1, f"cannot read file: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise AsmError(path, line, col, "file is not UTF-8 text") from None
    # Shown (in errors and the source panes) relative to the working directory, like includes.
    return assemble(text, _shown_path(os.path.abspath(path)), include_dirs)


def assemble_line(text: str, address: int = 0, symbols: Mapping[str, int] | None = None) -> Instruction:
    """Assemble one instruction as if it sat at ``address`` (for shells and tests)."""
    if not 0 <= address < 1 << 64:
        raise AsmError("<input>", 1, 1, f"address {_hex(address)} is outside the address space")
    asm = Assembler((), symbols)
    asm._place(asm.sec, SourceLine("<input>", 1, text), address)
    image = asm.run(text, "<input>")
    if len(asm.items) != 1 or asm.items[0].kind != "insn":
        raise AsmError("<input>", 1, 1, "expected exactly one instruction")
    return decode(image.bytes_at(address, INSN_SIZE))
