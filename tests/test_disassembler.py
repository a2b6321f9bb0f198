"""The disassembler: exact text, bad slots, and the assemble/disassemble round trip."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.isa import opcodes
from lab.isa.assembler import assemble, assemble_line
from lab.isa.disassembler import BAD, disassemble, disassemble_bytes, names_by_address
from lab.isa.encoding import INSN_SIZE, Instruction, Mem, decode, encode
from lab.isa.registers import CONTROL_REGS, RIP_BASE

OP = {o.name: o.code for o in opcodes.ALL}
COND = opcodes.CONDITIONS


def I(name, form="", size=8, a=0, b=0, mem=None, imm=None, aux=0) -> Instruction:
    return Instruction(OP[name], form, size, a, b, mem, imm, aux)


@pytest.mark.parametrize("insn, addr, text", [
    (I("nop"), 0, "nop"),
    (I("mov", "ri", 8, a=0, imm=5), 0, "mov rax, 0x5"),
    (I("mov", "ri", 4, a=1, imm=-1), 0, "mov ecx, -0x1"),
    (I("mov", "rr", 1, a=0, b=3), 0, "mov al, bl"),
    (I("add", "mi", 8, mem=Mem(3, 1, 8, 0x10), imm=1), 0, "add qword [rbx + rcx*8 + 0x10], 0x1"),
    (I("mov", "rm", 2, a=2, mem=Mem(5, None, 1, -8)), 0, "mov dx, word [rbp - 0x8]"),
    (I("mov", "rm", 8, mem=Mem(None, 1, 1, 0)), 0, "mov rax, qword [rcx*1]"),
    (I("mov", "rm", 8, mem=Mem(None, None, 1, 0x1000)), 0, "mov rax, qword [0x1000]"),
    (I("mov", "mr", 8, b=0, mem=Mem(RIP_BASE, None, 1, 0x20)), 0, "mov qword [rip + 0x20], rax"),
    (I("lea", "rm", 8, a=6, mem=Mem(RIP_BASE, None, 1, -0x20)), 0, "lea rsi, [rip - 0x20]"),
    (I("jmp", "i", imm=0x20), 0x1000, "jmp 0x1030"),
    (I("jcc", "i", imm=-32, aux=COND["z"]), 0x1000, "je 0xff0"),
    (I("call", "m", mem=Mem(0, None, 1, 0)), 0, "call qword [rax]"),
    (I("jmp", "r", a=0), 0, "jmp rax"),
    (I("setcc", "r", 1, a=0, aux=COND["ne"]), 0, "setne al"),
    (I("cmovcc", "rr", 8, a=0, b=3, aux=COND["g"]), 0, "cmovg rax, rbx"),
    (I("movzx", "rm", 4, a=0, mem=Mem(3, None, 1, 0), aux=1), 0, "movzx eax, byte [rbx]"),
    (I("movsx", "rr", 8, a=0, b=0, aux=4), 0, "movsx rax, eax"),
    (I("shl", "rr", 8, a=0, b=1), 0, "shl rax, cl"),
    (I("sar", "mi", 4, mem=Mem(0, None, 1, 0), imm=3), 0, "sar dword [rax], 0x3"),
    (I("in", "rr", 1, a=0, b=2), 0, "in al, dx"),
    (I("in", "ri", 4, imm=0x60), 0, "in eax, 0x60"),
    (I("out", "rr", 2, a=2, b=0), 0, "out dx, ax"),
    (I("out", "ir", 1, imm=0xE9), 0, "out 0xe9, al"),
    (I("movtocr", "rr", 8, a=3, b=0), 0, "mov cr3, rax"),
    (I("movfromcr", "rr", 8, a=0, b=0), 0, "mov rax, cr0"),
    (I("imul", "rri", 8, a=0, b=3, imm=10), 0, "imul rax, rbx, 0xa"),
    (I("imul", "rmi", 4, a=0, mem=Mem(3, None, 1, 0), imm=-3), 0, "imul eax, dword [rbx], -0x3"),
    (I("push", "i", imm=5), 0, "push 0x5"),
    (I("pop", "m", mem=Mem(4, None, 1, 8)), 0, "pop qword [rsp + 0x8]"),
    (I("movs", "", 1, aux=1), 0, "rep movsb"),
    (I("stos", "", 8), 0, "stosq"),
    (I("ret", "i", imm=8), 0, "ret 0x8"),
    (I("int", "i", imm=0x80), 0, "int 0x80"),
    (I("invlpg", "m", mem=Mem(7, None, 1, 0)), 0, "invlpg [rdi]"),
    (I("lidt", "m", mem=Mem(RIP_BASE, None, 1, 0)), 0, "lidt [rip]"),
    (I("ltr", "r", 2, a=0), 0, "ltr ax"),
    (I("test", "mr", 8, b=0, mem=Mem(3, None, 1, 0)), 0, "test qword [rbx], rax"),
])
def test_text(insn, addr, text):
    assert disassemble(insn, addr) == text
    assert assemble_line(text, addr) == insn


def test_symbols_name_targets_and_rip_relative_data():
    symbols = {"_start": 0x1000, "loop": 0x1040, "msg": 0x2000, "func.local": 0x1080, "func": 0x1080}
    assert disassemble(I("jmp", "i", imm=0x30), 0x1000, symbols) == "jmp loop"
    # A global name is preferred over a local one at the same address.
    assert disassemble(I("call", "i", imm=0x70), 0x1000, symbols) == "call func"
    lea = I("lea", "rm", 8, a=7, mem=Mem(RIP_BASE, None, 1, 0x2000 - 0x1010))
    assert disassemble(lea, 0x1000, symbols) == "lea rdi, [rip + msg]"
    assert disassemble(I("mov", "rm", 8, mem=Mem(None, None, 1, 0x2000)), 0, symbols) == "mov rax, qword [msg]"
    # Not an exact address: plain hex.
    assert disassemble(I("jmp", "i", imm=0x34), 0x1000, symbols) == "jmp 0x1044"


def test_names_by_address_skips_names_that_do_not_read_back():
    names = names_by_address({"rax": 1, "a b": 2, ".x": 3, "ok": 4})
    assert names == {4: "ok"}


def test_disassemble_bytes_marks_bad_slots():
    good = encode(I("hlt"))
    data = good + b"\xee" * 16 + good[:5]
    rows = disassemble_bytes(data, 0x4000)
    assert [(a, t) for a, _, t in rows] == [(0x4000, "hlt"), (0x4010, BAD), (0x4020, BAD)]
    assert rows[0][1] == good and rows[2][1] == good[:5]


def test_image_disassembles_and_reassembles_slot_by_slot():
    src = """
    .org 0x400000
_start:
    mov rdi, msg
    lea rsi, [rip + msg]
    call print
1:  dec rcx
    jnz 1b
    hlt
print:
    mov al, [rdi]
    out 0xe9, al
    ret
.data
msg: .asciz "hi"
"""
    img = assemble(src, "p.s")
    text = img.sections[0]
    for addr, raw, line in disassemble_bytes(text.data, text.base, img.labels()):
        assert assemble_line(line, addr, img.labels()) == decode(raw)
    listing = [t for _, _, t in disassemble_bytes(text.data, text.base, img.labels())]
    assert listing[2] == "call print" and listing[1] == "lea rsi, [rip + msg]"


# -------------------------------------------------------------- round trip property
S32 = st.integers(-(1 << 31), (1 << 31) - 1)
REG = st.integers(0, 15)


def data_imm(size: int, wide: bool = False) -> st.SearchStrategy:
    """Immediates as the assembler stores them for an operand of ``size`` bytes."""
    if size == 8:
        return st.integers(-(1 << 63), (1 << 63) - 1) if wide else S32
    if size == 4:
        return S32
    bits = 8 * size
    return st.integers(-(1 << (bits - 1)), (1 << bits) - 1)


mems = st.one_of(
    st.builds(Mem, st.just(RIP_BASE), st.none(), st.just(1), S32),
    st.builds(lambda base, disp: Mem(base, None, 1, disp), st.one_of(st.none(), REG), S32),
    st.builds(Mem, st.one_of(st.none(), REG), REG, st.sampled_from((1, 2, 4, 8)), S32),
)
SIZES = st.sampled_from((1, 2, 4, 8))
WIDE = st.sampled_from((2, 4, 8))


@st.composite
def valid_instructions(draw) -> Instruction:
    """Instructions exactly as the assembler produces them."""
    info = draw(st.sampled_from(opcodes.ALL))
    name, code = info.name, info.code
    cond = draw(st.integers(0, 15))

    def regmem(form: str, size: int, aux: int = 0, imm=None) -> Instruction:
        a = draw(REG) if form[0] == "r" else 0
        b = draw(REG) if len(form) > 1 and form[1] == "r" else 0
        mem = draw(mems) if "m" in form else None
        return Instruction(code, form, size, a, b, mem, imm, aux)

    if info.forms == ("",):
        return Instruction(code, "")
    if name in ("movs", "stos"):
        return Instruction(code, "", draw(st.sampled_from((1, 8))), aux=draw(st.integers(0, 1)))
    if name == "ret":
        return draw(st.sampled_from((Instruction(code, ""),
                                     Instruction(code, "i", imm=draw(st.integers(0, 0xFFFF))))))
    if name == "int":
        return Instruction(code, "i", imm=draw(st.integers(0, 255)))
    if name in ("jmp", "call", "jcc"):
        form = draw(st.sampled_from(info.forms))
        aux = cond if name == "jcc" else 0
        return regmem(form, 8, aux, draw(S32) if form == "i" else None)
    if name == "setcc":
        return regmem(draw(st.sampled_from(("r", "m"))), 1, cond)
    if name == "cmovcc":
        return regmem(draw(st.sampled_from(("rr", "rm"))), draw(WIDE), cond)
    if name == "movtocr":
        return Instruction(code, "rr", 8, draw(st.sampled_from(sorted(CONTROL_REGS.values()))), draw(REG))
    if name == "movfromcr":
        return Instruction(code, "rr", 8, draw(REG), draw(st.sampled_from(sorted(CONTROL_REGS.values()))))
    if name in ("movzx", "movsx"):
        aux = draw(st.sampled_from((1, 2) if name == "movzx" else (1, 2, 4)))
        size = draw(st.sampled_from([s for s in (2, 4, 8) if s > aux]))
        return regmem(draw(st.sampled_from(("rr", "rm"))), size, aux)
    if name == "lea":
        return regmem("rm", draw(WIDE))
    if name in ("push", "pop"):
        form = draw(st.sampled_from(info.forms))
        return regmem(form, 8, imm=draw(S32) if form == "i" else None)
    if name in ("invlpg", "lidt", "lgdt"):
        return regmem("m", 8)
    if name == "ltr":
        return regmem("r", 2)
    if name == "in":
        size = draw(st.sampled_from((1, 2, 4)))
        if draw(st.booleans()):
            return Instruction(code, "rr", size, 0, 2)
        return Instruction(code, "ri", size, imm=draw(st.integers(0, 255)))
    if name == "out":
        size = draw(st.sampled_from((1, 2, 4)))
        if draw(st.booleans()):
            return Instruction(code, "rr", size, 2, 0)
        return Instruction(code, "ir", size, imm=draw(st.integers(0, 255)))
    if name in ("shl", "shr", "sar", "rol", "ror"):
        form = draw(st.sampled_from(info.forms))
        size = draw(SIZES)
        insn = regmem(form, size, imm=draw(st.integers(0, 255)) if form[1] == "i" else None)
        return Instruction(insn.op, form, size, insn.a, 1 if form[1] == "r" else 0, insn.mem, insn.imm)
    if name == "imul":
        form = draw(st.sampled_from(info.forms))
        size = draw(SIZES) if len(form) == 1 else draw(WIDE)
        return regmem(form, size, imm=draw(data_imm(size)) if len(form) == 3 else None)
    # mov, xchg, the ALU group, test and the unary group
    form = draw(st.sampled_from(info.forms))
    size = draw(SIZES)
    imm = draw(data_imm(size, wide=name == "mov" and form == "ri")) if "i" in form else None
    return regmem(form, size, imm=imm)


ADDRS = st.integers(0, (1 << 60) >> 4).map(lambda x: x << 4) | st.sampled_from((0, 0x1000, (1 << 64) - 0x1000))


@given(valid_instructions(), ADDRS)
@settings(max_examples=3000, deadline=None, derandomize=True)
def test_round_trip(insn, addr):
    decoded = decode(encode(insn))
    assert decoded == insn
    text = disassemble(decoded, addr)
    assert assemble_line(text, addr) == insn, text


@given(valid_instructions(), st.integers(0x1000, 0x10000).map(lambda x: x << 4))
@settings(max_examples=1000, deadline=None, derandomize=True)
def test_round_trip_with_symbols(insn, addr):
    # A symbol table that names some of the addresses the instruction mentions.
    symbols = {"near": addr + 0x40, "far_away": addr - 0x1000, "here": addr, "func.inner": addr + 0x100}
    text = disassemble(insn, addr, symbols)
    assert assemble_line(text, addr, symbols) == insn, text


@given(valid_instructions())
@settings(max_examples=300, deadline=None, derandomize=True)
def test_every_valid_instruction_assembles_in_a_file(insn):
    text = disassemble(insn, 0x10000)
    img = assemble(f".org 0x10000\n{text}\n", "one.s")
    assert decode(img.bytes_at(0x10000, INSN_SIZE)) == insn


slot_bytes = st.tuples(st.sampled_from(sorted(opcodes.BY_CODE)), st.integers(0, 255),
                       st.integers(0, 15), st.integers(0, 15), st.sampled_from((0xFF, 0, 7, 16)),
                       st.sampled_from((0xFF, 0, 9)), st.sampled_from((0, 1, 2, 4, 8)), st.integers(0, 16),
                       st.binary(min_size=8, max_size=8)).map(lambda t: bytes(t[:8]) + t[8])


@given(st.lists(slot_bytes | st.binary(min_size=16, max_size=16), max_size=8), st.binary(max_size=15))
@settings(max_examples=1000, deadline=None, derandomize=True)
def test_disassemble_bytes_never_fails(slots, tail):
    rows = disassemble_bytes(b"".join(slots) + tail, 0xFFFF_FFFF_FFFF_FF00, {"x": 0x10})
    assert len(rows) == len(slots) + (1 if tail else 0)
    for (addr, raw, text), slot in zip(rows, slots):
        assert raw == slot and text
