"""The 16-byte encoding: byte layout, round trips and rejection of bad bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.isa import opcodes
from lab.isa.encoding import INSN_SIZE, DecodeError, Instruction, Mem, decode, encode
from lab.isa.registers import CONTROL_REGS, NO_REG, RIP_BASE

OP = {o.name: o.code for o in opcodes.ALL}


# -------------------------------------------------------------- fixed examples
def test_layout_of_register_immediate():
    raw = encode(Instruction(OP["mov"], "ri", 8, a=3, imm=5))
    assert len(raw) == INSN_SIZE
    assert raw[0] == OP["mov"]
    assert raw[1] == 0b0011_1001          # size 8 (3<<4), operand 1 immediate (2<<2), operand 0 register (1)
    assert raw[2:8] == bytes((3, 0, NO_REG, NO_REG, 0, 0))
    assert struct.unpack_from("<ii", raw, 8) == (0, 5)


def test_layout_of_memory_operand():
    insn = Instruction(OP["add"], "mr", 4, b=1, mem=Mem(3, 6, 8, -16))
    raw = encode(insn)
    assert raw[1] == (2 << 4) | (1 << 2) | 3
    assert raw[2:8] == bytes((0, 1, 3, 6, 8, 0))
    assert struct.unpack_from("<ii", raw, 8) == (-16, 0)
    assert decode(raw) == insn


def test_layout_of_imm64():
    insn = Instruction(OP["mov"], "ri", 8, a=0, imm=0x1122334455667788)
    raw = encode(insn)
    assert raw[1] & 0x40
    assert struct.unpack_from("<Q", raw, 8) == (0x1122334455667788,)
    assert decode(raw) == insn


def test_unsigned_64_bit_immediate_is_read_back_signed():
    raw = encode(Instruction(OP["mov"], "ri", 8, imm=0xFFFF888000000000))
    assert decode(raw).imm == 0xFFFF888000000000 - (1 << 64)
    # All ones is -1: it fits the 32-bit field and needs no imm64.
    raw = encode(Instruction(OP["mov"], "ri", 8, imm=(1 << 64) - 1))
    assert not raw[1] & 0x40 and decode(raw).imm == -1


def test_third_operand_flag():
    insn = Instruction(OP["imul"], "rri", 8, a=0, b=3, imm=10)
    raw = encode(insn)
    assert raw[1] & 0x80
    assert decode(raw) == insn


def test_rip_relative_and_condition_and_aux():
    insn = Instruction(OP["jcc"], "i", 8, imm=-32, aux=opcodes.CONDITIONS["ne"])
    assert decode(encode(insn)) == insn
    lea = Instruction(OP["lea"], "rm", 8, a=6, mem=Mem(RIP_BASE, None, 1, 0x100))
    assert encode(lea)[4] == RIP_BASE
    assert decode(encode(lea)) == lea


@pytest.mark.parametrize("insn, message", [
    (Instruction(0xEE, ""), "unknown opcode"),
    (Instruction(OP["nop"], "r"), "no form"),
    (Instruction(OP["mov"], "rr", 3), "bad operand size"),
    (Instruction(OP["mov"], "rr", 8, a=16), "out of range"),
    (Instruction(OP["mov"], "rm", 8, mem=Mem(0, 1, 3, 0)), "bad scale"),
    (Instruction(OP["mov"], "rm", 8, mem=Mem(0, None, 1, 1 << 31)), "displacement"),
    (Instruction(OP["mov"], "mi", 8, mem=Mem(0, None, 1, 0), imm=1 << 40), "64-bit immediate"),
    (Instruction(OP["mov"], "ri", 8, imm=1 << 64), "64 bits"),
    (Instruction(OP["mov"], "ri", 8), "does not match"),
    (Instruction(OP["mov"], "rr", 8, imm=1), "does not match"),
])
def test_encode_rejects_malformed_instructions(insn, message):
    with pytest.raises(ValueError, match=message):
        encode(insn)


def _patch(raw: bytes, pos: int, value: int) -> bytes:
    b = bytearray(raw)
    b[pos] = value
    return bytes(b)


@pytest.mark.parametrize("raw", [
    bytes(15),                                                              # truncated
    _patch(bytes(16), 0, 0xEE),                                             # unknown opcode
    _patch(encode(Instruction(OP["nop"], "")), 1, 0x34),                    # operand 1 without operand 0
    _patch(encode(Instruction(OP["push"], "r", 8)), 1, 0xB0),               # third operand alone
    _patch(encode(Instruction(OP["mov"], "rr", 8)), 1, 0x75),               # imm64 without immediate
    _patch(encode(Instruction(OP["mov"], "rm", 8, mem=Mem(0, None, 1, 0))), 6, 3),      # bad scale
    _patch(encode(Instruction(OP["mov"], "rm", 8, mem=Mem(0, None, 1, 0))), 4, 17),     # bad base
    _patch(encode(Instruction(OP["mov"], "rm", 8, mem=Mem(0, None, 1, 0))), 5, 16),     # bad index
    _patch(encode(Instruction(OP["mov"], "rm", 8, mem=Mem(RIP_BASE, None, 1, 0))), 5, 1),  # rip + index
    _patch(encode(Instruction(OP["mov"], "rr", 8)), 4, 0),                  # memory fields, no memory
    _patch(encode(Instruction(OP["mov"], "rr", 8)), 2, 16),                 # bad register
    _patch(encode(Instruction(OP["mov"], "rr", 8)), 12, 1),                 # immediate, no immediate operand
    _patch(encode(Instruction(OP["jcc"], "i", 8, imm=0)), 7, 16),           # no such condition
    _patch(encode(Instruction(OP["movzx"], "rr", 4, aux=1)), 7, 4),         # movzx from a dword
    _patch(encode(Instruction(OP["add"], "rr", 8)), 7, 1),                  # aux on an instruction without one
    _patch(encode(Instruction(OP["movtocr"], "rr", 8, a=3)), 2, 1),         # cr1
])
def test_decode_rejects(raw):
    with pytest.raises(DecodeError):
        decode(raw)


def test_imm64_holding_a_small_value_is_not_canonical():
    raw = bytearray(encode(Instruction(OP["mov"], "ri", 8, imm=1 << 40)))
    raw[8:16] = struct.pack("<q", 5)
    with pytest.raises(DecodeError):
        decode(bytes(raw))


def test_decode_at_offset():
    a = encode(Instruction(OP["nop"], ""))
    b = encode(Instruction(OP["hlt"], ""))
    assert decode(a + b, 16).op == OP["hlt"]


# -------------------------------------------------------------- properties
def _imm_for(form: str) -> st.SearchStrategy:
    s32 = st.integers(-(1 << 31), (1 << 31) - 1)
    wide = st.one_of(st.integers(-(1 << 63), -(1 << 31) - 1), st.integers(1 << 31, (1 << 63) - 1))
    return st.one_of(s32, wide) if "m" not in form else s32


mems = st.one_of(
    st.builds(Mem, st.just(RIP_BASE), st.none(), st.just(1), st.integers(-(1 << 31), (1 << 31) - 1)),
    st.builds(Mem, st.one_of(st.none(), st.integers(0, 15)), st.one_of(st.none(), st.integers(0, 15)),
              st.sampled_from((1, 2, 4, 8)), st.integers(-(1 << 31), (1 << 31) - 1)),
)


@st.composite
def decodable(draw) -> Instruction:
    """Any instruction decode() accepts, not only what the assembler writes."""
    info = draw(st.sampled_from(opcodes.ALL))
    form = draw(st.sampled_from(info.forms))
    size = draw(st.sampled_from((1, 2, 4, 8)))
    a, b = draw(st.integers(0, 15)), draw(st.integers(0, 15))
    crs = sorted(CONTROL_REGS.values())
    if info.name == "movtocr":
        a = draw(st.sampled_from(crs))
    if info.name == "movfromcr":
        b = draw(st.sampled_from(crs))
    aux = 0
    if info.name in ("jcc", "setcc", "cmovcc"):
        aux = draw(st.integers(0, 15))
    elif info.name in ("movzx", "movsx"):
        choices = (1, 2) if info.name == "movzx" else (1, 2, 4)
        aux = draw(st.sampled_from(choices))
        size = draw(st.sampled_from([s for s in (2, 4, 8) if s > aux]))
    elif info.name in ("movs", "stos"):
        aux = draw(st.integers(0, 1))
    mem = draw(mems) if "m" in form else None
    imm = draw(_imm_for(form)) if "i" in form else None
    return Instruction(info.code, form, size, a, b, mem, imm, aux)


@given(decodable())
@settings(max_examples=2000, deadline=None, derandomize=True)
def test_decode_encode_round_trip(insn):
    assert decode(encode(insn)) == insn


# Random bytes, but mostly with a real opcode and plausible fields, so that
# some of them decode and the checks after the opcode are exercised.
plausible_bytes = st.tuples(
    st.sampled_from(sorted(opcodes.BY_CODE)) | st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 17) | st.integers(0, 255),
    st.integers(0, 17) | st.integers(0, 255),
    st.sampled_from((NO_REG, 0, 3, 16, 17)) | st.integers(0, 255),
    st.sampled_from((NO_REG, 0, 5, 16)) | st.integers(0, 255),
    st.sampled_from((0, 1, 2, 4, 8)) | st.integers(0, 255),
    st.sampled_from((0, 1, 2, 4, 15)) | st.integers(0, 255),
    st.sampled_from((bytes(8), bytes(4) + b"\x05\0\0\0", b"\x10\0\0\0\0\0\0\0")) | st.binary(min_size=8, max_size=8),
).map(lambda t: bytes(t[:8]) + t[8])


@given(st.one_of(plausible_bytes, st.binary(min_size=0, max_size=20)))
@settings(max_examples=3000, deadline=None, derandomize=True)
def test_random_bytes_decode_or_raise_decode_error(raw):
    try:
        insn = decode(raw)
    except DecodeError:
        return
    # Whatever decodes has exactly one encoding: these very bytes.
    assert encode(insn) == raw[:16]

