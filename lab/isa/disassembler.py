"""Instructions back to assembly text.

The text is what the assembler accepts, so ``assemble_line(disassemble(i, a), a)``
gives back ``i``. Branch targets are shown as absolute addresses (or label
names when a symbol table is given), memory operands carry their size
(``qword [rbx + rcx*8 + 0x10]``) and rip-relative operands show the raw
displacement (``[rip + 0x20]``), or the label they point at when it is known.
"""

from __future__ import annotations

import re
from typing import Mapping

from . import opcodes
from .bits import M64
from .encoding import INSN_SIZE, DecodeError, Instruction, Mem, decode
from .registers import CONTROL_REGS, GPR_BY_NAME, RIP_BASE, SIZE_BY_NAME, SIZE_NAMES, reg_name

BAD = "(bad)"
_CR_NAMES = {v: k for k, v in CONTROL_REGS.items()}
_STRING_NAMES = {(base, size): name for name, (base, size) in opcodes.STRING_SPELLINGS.items()}
_SUFFIX = {1: "b", 2: "w", 4: "d", 8: "q"}
_PREFIX = {"jcc": "j", "setcc": "set", "cmovcc": "cmov"}
_NO_SIZE = {"lea", "invlpg", "lidt", "lgdt"}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_RESERVED = set(GPR_BY_NAME) | set(CONTROL_REGS) | set(SIZE_BY_NAME) | {"ptr", "rip"}


def _hex(v: int) -> str:
    return f"-{-v:#x}" if v < 0 else f"{v:#x}"


def names_by_address(symbols: Mapping[str, int] | None) -> dict[int, str]:
    """Address -> the name to print for it: a global name before a local one, else the first defined."""
    out: dict[int, str] = {}
    for name, value in (symbols or {}).items():
        # Only names the assembler reads back as themselves.
        if not _IDENT.fullmatch(name) or name.lower() in _RESERVED:
            continue
        addr = value & M64
        old = out.get(addr)
        if old is None or ("." in old and "." not in name):
            out[addr] = name
    return out


def disassemble(insn: Instruction, address: int, symbols: Mapping[str, int] | None = None) -> str:
    """One instruction at ``address`` as assembly text."""
    return _render(insn, address, names_by_address(symbols))


def disassemble_bytes(data: bytes | bytearray | memoryview, base: int,
                      symbols: Mapping[str, int] | None = None) -> list[tuple[int, bytes, str]]:
    """Every 16-byte slot of ``data`` (loaded at ``base``): (address, its bytes, text or "(bad)")."""
    names = names_by_address(symbols)
    data = bytes(data)
    out = []
    for off in range(0, len(data), INSN_SIZE):
        chunk = data[off:off + INSN_SIZE]
        addr = (base + off) & M64
        try:
            text = _render(decode(chunk), addr, names)
        except DecodeError:
            text = BAD
        out.append((addr, chunk, text))
    return out


def _render(insn: Instruction, address: int, names: dict[int, str]) -> str:
    info = opcodes.BY_CODE[insn.op]
    name = info.name
    nxt = (address + INSN_SIZE) & M64
    size, f = insn.size, insn.form

    def mem(kw: int | None) -> str:
        return _mem(insn.mem, kw, nxt, names)

    def imm() -> str:
        return _hex(insn.imm)

    def target() -> str:
        t = (nxt + insn.imm) & M64
        return names.get(t) or f"{t:#x}"

    if name in _PREFIX:
        mn = _PREFIX[name] + opcodes.CONDITION_NAMES[insn.aux]
    elif name in ("movs", "stos"):
        spelled = _STRING_NAMES.get((name, size), name + _SUFFIX[size])
        return ("rep " if insn.aux else "") + spelled
    else:
        mn = name
    if name == "movtocr":
        return f"mov {_CR_NAMES.get(insn.a, f'cr{insn.a}')}, {reg_name(insn.b)}"
    if name == "movfromcr":
        return f"mov {reg_name(insn.a)}, {_CR_NAMES.get(insn.b, f'cr{insn.b}')}"
    if name == "in":
        ops = [reg_name(0, size), "dx" if f == "rr" else imm()]
    elif name == "out":
        ops = ["dx" if f == "rr" else imm(), reg_name(0, size)]
    elif name in ("movzx", "movsx"):
        ops = [reg_name(insn.a, size), reg_name(insn.b, insn.aux) if f == "rr" else mem(insn.aux)]
    elif name in ("jmp", "call", "jcc") and f == "i":
        ops = [target()]
    else:
        ops = []
        for k, kind in enumerate(f):
            if kind == "r":
                if k == 1 and name in ("shl", "shr", "sar", "rol", "ror"):
                    ops.append("cl")
                else:
                    ops.append(reg_name(insn.a if k == 0 else insn.b, size))
            elif kind == "m":
                ops.append(mem(None if name in _NO_SIZE else size))
            else:
                ops.append(imm())
    return mn + (" " + ", ".join(ops) if ops else "")


def _mem(m: Mem, kw: int | None, nxt: int, names: dict[int, str]) -> str:
    prefix = f"{SIZE_NAMES[kw]} " if kw else ""
    if m.base == RIP_BASE:
        named = names.get((nxt + m.disp) & M64)
        if named:
            inner = f"rip + {named}"
        elif m.disp:
            inner = f"rip {'-' if m.disp < 0 else '+'} {abs(m.disp):#x}"
        else:
            inner = "rip"
        return f"{prefix}[{inner}]"
    parts = []
    if m.base is not None:
        parts.append(reg_name(m.base))
    if m.index is not None:
        # A lone index keeps its "*1" so the assembler does not read it as a base.
        parts.append(reg_name(m.index) + (f"*{m.scale}" if m.scale != 1 or m.base is None else ""))
    if m.base is None:
        # No base: the displacement is an address, worth naming.
        named = names.get(m.disp & M64)
        if not parts:
            return f"{prefix}[{named or _hex(m.disp)}]"
        if named and m.disp:
            return f"{prefix}[{parts[0]} + {named}]"
    text = " + ".join(parts)
    if m.disp:
        text += f" {'-' if m.disp < 0 else '+'} {abs(m.disp):#x}"
    return f"{prefix}[{text}]"
