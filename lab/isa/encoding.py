"""The lab's fixed-width instruction encoding.

Every instruction is 16 bytes, so code can be fetched and decoded one slot at
a time and a disassembler never loses its footing. Layout (little endian)::

    byte 0     opcode (see opcodes.py)
    byte 1     form: bits 0-1 kind of operand 0, bits 2-3 kind of operand 1
               (0 none, 1 register, 2 immediate, 3 memory), bits 4-5 operand
               size (0=1, 1=2, 2=4, 3=8 bytes), bit 6 imm64 (bytes 8-15 hold a
               64-bit immediate, no memory operand), bit 7 a third operand,
               an immediate (imul r, r/m, imm)
    byte 2     register field A (operand 0's register, or the control register)
    byte 3     register field B (operand 1's register)
    byte 4     memory base register (0-15, 16 = rip, 0xFF none)
    byte 5     memory index register (0-15, 0xFF none)
    byte 6     memory scale (1, 2, 4 or 8; 0 when there is no memory operand)
    byte 7     aux: condition code (jcc/setcc/cmovcc), source size (movzx/movsx),
               1 = rep (movs/stos)
    bytes 8-11 displacement, signed 32-bit
    bytes 12-15 immediate, signed 32-bit, sign-extended to the operand size

Branch targets are immediates relative to the next instruction, as on x86.
Any byte pattern that does not decode to a valid instruction raises #UD.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from . import opcodes
from .registers import CONTROL_REGS, NO_REG, RIP_BASE

INSN_SIZE = 16

KIND_NONE, KIND_REG, KIND_IMM, KIND_MEM = 0, 1, 2, 3
_KIND_LETTER = {KIND_REG: "r", KIND_IMM: "i", KIND_MEM: "m"}
_LETTER_KIND = {v: k for k, v in _KIND_LETTER.items()}
_SIZE_CODE = {1: 0, 2: 1, 4: 2, 8: 3}
_CODE_SIZE = (1, 2, 4, 8)
_CR_NUMBERS = frozenset(CONTROL_REGS.values())


class DecodeError(Exception):
    """The bytes are not a valid instruction (the CPU raises #UD)."""


@dataclass(frozen=True, slots=True)
class Mem:
    """A memory operand ``[base + index*scale + disp]``."""
    base: int | None      # 0-15, RIP_BASE, or None
    index: int | None
    scale: int
    disp: int


@dataclass(frozen=True, slots=True)
class Instruction:
    op: int                    # opcode byte
    form: str                  # operand kinds, e.g. "rm"
    size: int = 8              # operand size in bytes
    a: int = 0                 # register field A
    b: int = 0                 # register field B
    mem: Mem | None = None
    imm: int | None = None     # immediate / relative branch offset (signed)
    aux: int = 0               # condition / source size / rep

    @property
    def info(self) -> opcodes.OpInfo:
        return opcodes.BY_CODE[self.op]

    @property
    def mnemonic(self) -> str:
        return opcodes.BY_CODE[self.op].name


def _fits_s32(v: int) -> bool:
    return -(1 << 31) <= v < (1 << 31)


#: The form byte's operand bits for each form string (filled as forms are first encoded).
_FORM_BITS: dict[str, int] = {}
_SLOT = struct.Struct("<8Bii")          # head, displacement, immediate
_SLOT_IMM64 = struct.Struct("<8Bq")     # head, 64-bit immediate


def _form_bits(form: str) -> int:
    kinds = [_LETTER_KIND[c] for c in form]
    bits = 0
    if len(kinds) > 0:
        bits |= kinds[0]
    if len(kinds) > 1:
        bits |= kinds[1] << 2
    if len(kinds) > 2:
        bits |= 0x80                    # a third operand
    _FORM_BITS[form] = bits
    return bits


def encode(insn: Instruction) -> bytes:
    """Encode one instruction into its 16 bytes."""
    op, form, size, a, b, mem, imm_given, aux = (insn.op, insn.form, insn.size, insn.a, insn.b, insn.mem,
                                                 insn.imm, insn.aux)
    info = opcodes.BY_CODE.get(op)
    if info is None:
        raise ValueError(f"unknown opcode {op:#x}")
    if form not in info.forms:
        raise ValueError(f"{info.name} has no form {form!r}")
    if size not in _SIZE_CODE:
        raise ValueError(f"bad operand size {size}")
    if not (0 <= a <= 15 and 0 <= b <= 15 and 0 <= aux <= 0xFF):
        raise ValueError("register or aux field out of range")
    if ("i" in form) != (imm_given is not None) or ("m" in form) != (mem is not None):
        raise ValueError(f"form {form!r} does not match the operands given")
    bits = _FORM_BITS.get(form)
    if bits is None:
        bits = _form_bits(form)
    bits |= _SIZE_CODE[size] << 4
    imm = imm_given or 0
    disp = 0
    base = index = NO_REG
    scale = 0
    if mem is not None:
        base = NO_REG if mem.base is None else mem.base
        index = NO_REG if mem.index is None else mem.index
        scale = mem.scale
        disp = mem.disp
        if scale not in (1, 2, 4, 8):
            raise ValueError(f"bad scale {scale}")
        if not (0 <= base <= RIP_BASE or base == NO_REG) or not (0 <= index <= 15 or index == NO_REG):
            raise ValueError("bad base or index register")
        if not _fits_s32(disp):
            raise ValueError("displacement does not fit in 32 bits")
    if not -(1 << 63) <= imm < (1 << 64):
        raise ValueError("immediate does not fit in 64 bits")
    if imm >= 1 << 63:
        imm -= 1 << 64      # an unsigned 64-bit value: the same bits, read signed
    if imm_given is not None and not _fits_s32(imm):
        if mem is not None:
            raise ValueError("a 64-bit immediate cannot go with a memory operand")
        return _SLOT_IMM64.pack(op, bits | 0x40, a, b, base, index, scale, aux, imm)
    return _SLOT.pack(op, bits, a, b, base, index, scale, aux, disp, imm)


def decode(raw: bytes | bytearray | memoryview, offset: int = 0) -> Instruction:
    """Decode the 16 bytes at ``offset``; raise DecodeError if invalid."""
    chunk = bytes(raw[offset:offset + INSN_SIZE])
    insn = _DECODED.get(chunk)
    if insn is not None:
        return insn
    insn = _decode(chunk)
    if len(_DECODED) >= _DECODED_KEPT:
        _DECODED.clear()
    _DECODED[chunk] = insn
    return insn


#: Instructions decoded before, by their 16 bytes (an Instruction is immutable, and
#: translating a block decodes each of its instructions again); bounded. Bytes that do
#: not decode raise every time and are never kept.
_DECODED: dict[bytes, Instruction] = {}
_DECODED_KEPT = 65_536


def _decode(chunk: bytes) -> Instruction:
    if len(chunk) != INSN_SIZE:
        raise DecodeError("truncated instruction")
    op, form, a, b, base, index, scale, aux = chunk[:8]
    info = opcodes.BY_CODE.get(op)
    if info is None:
        raise DecodeError(f"unknown opcode {op:#04x}")
    kinds = []
    k0, k1 = form & 3, (form >> 2) & 3
    if k0:
        kinds.append(k0)
        if k1:
            kinds.append(k1)
    elif k1:
        raise DecodeError("operand 1 without operand 0")
    letters = "".join(_KIND_LETTER[k] for k in kinds)
    if form & 0x80:
        # The third operand only follows two others (imul r, r/m, imm).
        if len(kinds) != 2:
            raise DecodeError("third operand without two others")
        letters += "i"
    if letters not in info.forms:
        raise DecodeError(f"{info.name} has no form {letters!r}")
    size = _CODE_SIZE[(form >> 4) & 3]
    has_mem = "m" in letters
    if form & 0x40:
        if has_mem:
            raise DecodeError("imm64 with a memory operand")
        if "i" not in letters:
            raise DecodeError("imm64 without an immediate operand")
        (imm,) = struct.unpack_from("<q", chunk, 8)
        if _fits_s32(imm):
            # encode() uses the wide form only when it must: one encoding per instruction.
            raise DecodeError("imm64 holding a 32-bit value")
        disp = 0
    else:
        disp, imm = struct.unpack_from("<ii", chunk, 8)
    mem = None
    if has_mem:
        if scale not in (1, 2, 4, 8):
            raise DecodeError(f"bad scale {scale}")
        if base != NO_REG and base > RIP_BASE:
            raise DecodeError(f"bad base register {base}")
        if index != NO_REG and index > 15:
            raise DecodeError(f"bad index register {index}")
        if base == RIP_BASE and index != NO_REG:
            raise DecodeError("rip-relative with an index")
        mem = Mem(None if base == NO_REG else base, None if index == NO_REG else index, scale, disp)
    elif base != NO_REG or index != NO_REG or scale != 0 or (disp != 0 and not form & 0x40):
        raise DecodeError("memory fields set without a memory operand")
    if a > 15 or b > 15:
        raise DecodeError("bad register field")
    _check_aux(info.name, aux, size)
    if info.name == "movtocr" and a not in _CR_NUMBERS or info.name == "movfromcr" and b not in _CR_NUMBERS:
        raise DecodeError("no such control register")
    has_imm = "i" in letters
    if not has_imm and imm != 0 and not form & 0x40:
        raise DecodeError("immediate set without an immediate operand")
    return Instruction(op, letters, size, a, b, mem, imm if has_imm else None, aux)


def _check_aux(name: str, aux: int, size: int) -> None:
    """The aux byte means something for a few instructions and must be 0 elsewhere."""
    if name in ("jcc", "setcc", "cmovcc"):
        ok = aux < 16
    elif name == "movzx":
        ok = aux in (1, 2) and aux < size
    elif name == "movsx":
        ok = aux in (1, 2, 4) and aux < size
    elif name in ("movs", "stos"):
        ok = aux in (0, 1)
    else:
        ok = aux == 0
    if not ok:
        raise DecodeError(f"bad aux byte {aux:#x} for {name}")
