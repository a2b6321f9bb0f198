"""The assembler: every mnemonic and form, expressions, labels, sections, directives and errors."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.errors import UserError
from lab.isa import opcodes
from lab.isa.assembler import AsmError, assemble, assemble_file, assemble_line
from lab.isa.encoding import INSN_SIZE, Instruction, Mem, decode, encode
from lab.isa.image import Image, ImageFormatError, SourceLine
from lab.isa.listing import render_listing
from lab.isa.registers import RIP_BASE

OP = {o.name: o.code for o in opcodes.ALL}
C = opcodes.CONDITIONS
RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI = range(8)


def I(name, form="", size=8, a=0, b=0, mem=None, imm=None, aux=0) -> Instruction:
    return Instruction(OP[name], form, size, a, b, mem, imm, aux)


def M(base=None, index=None, scale=1, disp=0) -> Mem:
    return Mem(base, index, scale, disp)


def insns(img: Image) -> list[Instruction]:
    return [decode(img.bytes_at(a, INSN_SIZE)) for a in sorted(img.instructions)]


def err(source: str, filename: str = "t.s", **kw) -> str:
    with pytest.raises(AsmError) as e:
        assemble(source, filename, **kw)
    return str(e.value)


# -------------------------------------------------------------- every mnemonic and form
ALU = ("add", "or", "adc", "sbb", "and", "sub", "xor", "cmp")
SHIFTS = ("shl", "shr", "sar", "rol", "ror")
UNARY = ("inc", "dec", "neg", "not", "mul", "div", "idiv", "imul")
FORMS = [
    # data movement
    ("mov rax, rbx", I("mov", "rr", 8, RAX, RBX)),
    ("mov r15d, r8d", I("mov", "rr", 4, 15, 8)),
    ("mov r9w, si", I("mov", "rr", 2, 9, RSI)),
    ("mov spl, r10b", I("mov", "rr", 1, RSP, 10)),
    ("mov rax, 5", I("mov", "ri", 8, RAX, imm=5)),
    ("mov rax, -1", I("mov", "ri", 8, RAX, imm=-1)),
    ("mov rax, 0x123456789", I("mov", "ri", 8, RAX, imm=0x123456789)),
    ("mov rax, 0xffffffffffffffff", I("mov", "ri", 8, RAX, imm=-1)),
    ("mov rdx, 0x80010001", I("mov", "ri", 8, RDX, imm=0x80010001)),
    ("mov ecx, 0xc0000080", I("mov", "ri", 4, RCX, imm=0xC0000080 - (1 << 32))),
    ("mov al, 0xff", I("mov", "ri", 1, RAX, imm=0xFF)),
    ("MOV AX, 0x1234", I("mov", "ri", 2, RAX, imm=0x1234)),
    ("mov rax, [rbx]", I("mov", "rm", 8, RAX, mem=M(RBX))),
    ("mov eax, dword ptr [rbx + 8]", I("mov", "rm", 4, RAX, mem=M(RBX, disp=8))),
    ("mov [rdi], rsi", I("mov", "mr", 8, 0, RSI, mem=M(RDI))),
    ("mov byte [rax], 5", I("mov", "mi", 1, mem=M(RAX), imm=5)),
    ("mov qword [rax], -1", I("mov", "mi", 8, mem=M(RAX), imm=-1)),
    ("movzx eax, bl", I("movzx", "rr", 4, RAX, RBX, aux=1)),
    ("movzx rax, word [rsi]", I("movzx", "rm", 8, RAX, mem=M(RSI), aux=2)),
    ("movsx rax, dword [rsi]", I("movsx", "rm", 8, RAX, mem=M(RSI), aux=4)),
    ("movsx cx, dl", I("movsx", "rr", 2, RCX, RDX, aux=1)),
    ("lea rax, [rbx+8]", I("lea", "rm", 8, RAX, mem=M(RBX, disp=8))),
    ("lea eax, [rbx + rcx*4]", I("lea", "rm", 4, RAX, mem=M(RBX, RCX, 4))),
    ("xchg rax, rbx", I("xchg", "rr", 8, RAX, RBX)),
    ("xchg rax, [rbx]", I("xchg", "rm", 8, RAX, mem=M(RBX))),
    ("xchg [rbx], eax", I("xchg", "mr", 4, 0, RAX, mem=M(RBX))),
    ("push rbp", I("push", "r", 8, RBP)),
    ("push 5", I("push", "i", 8, imm=5)),
    ("push qword [rax]", I("push", "m", 8, mem=M(RAX))),
    ("push [rax]", I("push", "m", 8, mem=M(RAX))),
    ("pop r12", I("pop", "r", 8, 12)),
    ("pop qword [rsp + 8]", I("pop", "m", 8, mem=M(RSP, disp=8))),
    ("pushfq", I("pushfq")),
    ("popfq", I("popfq")),
    # arithmetic
    *[(f"{op} rax, rbx", I(op, "rr", 8, RAX, RBX)) for op in ALU],
    *[(f"{op} ecx, 7", I(op, "ri", 4, RCX, imm=7)) for op in ALU],
    *[(f"{op} rax, [rbx]", I(op, "rm", 8, RAX, mem=M(RBX))) for op in ALU],
    *[(f"{op} [rbx], al", I(op, "mr", 1, 0, RAX, mem=M(RBX))) for op in ALU],
    *[(f"{op} word [rbx], -2", I(op, "mi", 2, mem=M(RBX), imm=-2)) for op in ALU],
    ("cmp byte [rsi], 0", I("cmp", "mi", 1, mem=M(RSI), imm=0)),
    ("and rax, ~0xfff", I("and", "ri", 8, RAX, imm=~0xFFF)),
    ("and rax, 0xfffffffffffff000", I("and", "ri", 8, RAX, imm=-0x1000)),
    ("add eax, 0xffffffff", I("add", "ri", 4, RAX, imm=-1)),
    ("test rax, rax", I("test", "rr", 8, RAX, RAX)),
    ("test al, 1", I("test", "ri", 1, RAX, imm=1)),
    ("test [rbx], rax", I("test", "mr", 8, 0, RAX, mem=M(RBX))),
    ("test rax, [rbx]", I("test", "mr", 8, 0, RAX, mem=M(RBX))),
    ("test dword [rbx], 0x80", I("test", "mi", 4, mem=M(RBX), imm=0x80)),
    *[(f"{op} rdx", I(op, "r", 8, RDX)) for op in UNARY],
    *[(f"{op} word [rdx]", I(op, "m", 2, mem=M(RDX))) for op in UNARY],
    ("imul rax, rbx", I("imul", "rr", 8, RAX, RBX)),
    ("imul eax, [rbx]", I("imul", "rm", 4, RAX, mem=M(RBX))),
    ("imul rax, rbx, 10", I("imul", "rri", 8, RAX, RBX, imm=10)),
    ("imul rax, [rbx], 3", I("imul", "rmi", 8, RAX, mem=M(RBX), imm=3)),
    *[(f"{op} rax, 3", I(op, "ri", 8, RAX, imm=3)) for op in SHIFTS],
    *[(f"{op} ebx, cl", I(op, "rr", 4, RBX, 1)) for op in SHIFTS],
    *[(f"{op} qword [rax], 1", I(op, "mi", 8, mem=M(RAX), imm=1)) for op in SHIFTS],
    *[(f"{op} byte [rax], cl", I(op, "mr", 1, 0, 1, mem=M(RAX))) for op in SHIFTS],
    ("cqo", I("cqo")),
    # control flow (at address 0: targets are relative to 0x10)
    ("jmp 0x100", I("jmp", "i", imm=0xF0)),
    ("jmp rax", I("jmp", "r", 8, RAX)),
    ("jmp qword [rax + 8]", I("jmp", "m", 8, mem=M(RAX, disp=8))),
    ("call 0", I("call", "i", imm=-16)),
    ("call r11", I("call", "r", 8, 11)),
    ("call [rip + 0x20]", I("call", "m", 8, mem=M(RIP_BASE, disp=0x20))),
    ("ret", I("ret")),
    ("ret 8", I("ret", "i", imm=8)),
    *[(f"j{cc} 0x10", I("jcc", "i", imm=0, aux=C[cc])) for cc in C],
    *[(f"set{cc} al", I("setcc", "r", 1, RAX, aux=C[cc])) for cc in ("e", "ne", "b", "ae", "l", "g")],
    ("setz byte [rdi]", I("setcc", "m", 1, mem=M(RDI), aux=C["z"])),
    ("setg [rdi]", I("setcc", "m", 1, mem=M(RDI), aux=C["g"])),
    *[(f"cmov{cc} rax, rbx", I("cmovcc", "rr", 8, RAX, RBX, aux=C[cc])) for cc in ("z", "nz", "a", "le")],
    ("cmovne ecx, [rsi]", I("cmovcc", "rm", 4, RCX, mem=M(RSI), aux=C["ne"])),
    ("movsb", I("movs", "", 1)),
    ("movsq", I("movs", "", 8)),
    ("stosb", I("stos", "", 1)),
    ("stosq", I("stos", "", 8)),
    ("rep movsb", I("movs", "", 1, aux=1)),
    ("rep stosq", I("stos", "", 8, aux=1)),
    ("REP MOVSQ", I("movs", "", 8, aux=1)),
    # system
    ("int 0x80", I("int", "i", imm=0x80)),
    ("int3", I("int3")),
    *[(name, I(name)) for name in ("iretq", "syscall", "sysretq", "hlt", "cli", "sti", "cpuid", "rdmsr", "wrmsr",
                                    "rdtsc", "vmcall", "vmmcall", "pause", "ud2", "swapgs", "nop")],
    ("in al, dx", I("in", "rr", 1, 0, RDX)),
    ("in ax, dx", I("in", "rr", 2, 0, RDX)),
    ("in eax, dx", I("in", "rr", 4, 0, RDX)),
    ("in al, 0x60", I("in", "ri", 1, imm=0x60)),
    ("out dx, al", I("out", "rr", 1, RDX, 0)),
    ("out dx, eax", I("out", "rr", 4, RDX, 0)),
    ("out 0xe9, al", I("out", "ir", 1, imm=0xE9)),
    ("mov cr3, rax", I("movtocr", "rr", 8, 3, RAX)),
    ("mov cr0, r9", I("movtocr", "rr", 8, 0, 9)),
    ("mov rax, cr0", I("movfromcr", "rr", 8, RAX, 0)),
    ("mov rdi, cr2", I("movfromcr", "rr", 8, RDI, 2)),
    ("mov cr4, rax", I("movtocr", "rr", 8, 4, RAX)),
    ("invlpg [rdi]", I("invlpg", "m", 8, mem=M(RDI))),
    ("lidt [rax]", I("lidt", "m", 8, mem=M(RAX))),
    ("lgdt [rip + 0x100]", I("lgdt", "m", 8, mem=M(RIP_BASE, disp=0x100))),
    ("ltr ax", I("ltr", "r", 2, RAX)),
]


@pytest.mark.parametrize("text, expected", FORMS, ids=[t for t, _ in FORMS])
def test_form(text, expected):
    got = assemble_line(text)
    assert got == expected
    assert decode(encode(got)) == expected


def test_every_opcode_is_covered_by_the_form_table():
    covered = {e.op for _, e in FORMS}
    assert covered == set(opcodes.BY_CODE)
    forms = {(e.op, e.form) for _, e in FORMS}
    assert forms == {(o.code, f) for o in opcodes.ALL for f in o.forms}


# -------------------------------------------------------------- memory operands
@pytest.mark.parametrize("operand, mem", [
    ("[rax]", M(RAX)),
    ("[rax + 8]", M(RAX, disp=8)),
    ("[8 + rax]", M(RAX, disp=8)),
    ("[rax - 8]", M(RAX, disp=-8)),
    ("[rbx + rcx*8 + 0x10]", M(RBX, RCX, 8, 0x10)),
    ("[0x10 + rcx*8 + rbx]", M(RBX, RCX, 8, 0x10)),
    ("[8*rcx + rbx]", M(RBX, RCX, 8)),
    ("[rbx + rcx]", M(RBX, RCX, 1)),
    ("[rcx*1]", M(None, RCX, 1)),
    ("[rcx*2 + 4*4]", M(None, RCX, 2, 16)),
    ("[r12 + r13*2 - 3]", M(12, 13, 2, -3)),
    ("[rax + (2 + 3) * 4]", M(RAX, disp=20)),
    ("[rax + rcx*(1 << 2)]", M(RAX, RCX, 4)),
    ("[0x1000]", M(disp=0x1000)),
    ("[-8]", M(disp=-8)),
    ("[0xfffffffffffff000]", M(disp=-0x1000)),
    ("[rip]", M(RIP_BASE)),
    ("[rip + 0x20]", M(RIP_BASE, disp=0x20)),
    ("[rip - 0x20]", M(RIP_BASE, disp=-0x20)),
    ("qword ptr [rax]", M(RAX)),
])
def test_memory_operand_forms(operand, mem):
    assert assemble_line(f"mov rax, {operand}").mem == mem


def test_rip_relative_label_is_distance_from_next_instruction():
    img = assemble(".org 0x1000\nlea rsi, [rip + msg]\nmov rax, [rip + msg + 4]\nmsg: .quad 0", "t.s")
    a, b = insns(img)
    assert a.mem == M(RIP_BASE, disp=0x1020 - 0x1010)
    assert b.mem == M(RIP_BASE, disp=0x1024 - 0x1020)


def test_rip_relative_difference_of_labels_is_a_constant():
    img = assemble("a: nop\nb: mov rax, [rip + b - a]", "t.s")
    assert insns(img)[1].mem == M(RIP_BASE, disp=0x10)


def test_absolute_label_and_label_plus_register():
    img = assemble(".org 0x2000\nmov rax, [table]\nmov rax, [table + rbx*8]\ntable: .quad 1", "t.s")
    a, b = insns(img)
    assert a.mem == M(disp=0x2020)
    assert b.mem == M(None, RBX, 8, 0x2020)


# -------------------------------------------------------------- expressions
@pytest.mark.parametrize("expr, value", [
    ("1 + 2 * 3", 7),
    ("(1 + 2) * 3", 9),
    ("1 << 4 + 1", 32),
    ("0xff & 0x0f | 0x30", 0x3F),
    ("6 ^ 3", 5),
    ("~0", -1),
    ("-(-5)", 5),
    ("+5", 5),
    ("7 / 2", 3),
    ("-7 / 2", -3),
    ("-7 % 2", -1),
    ("7 % -2", 1),
    ("0b1010", 10),
    ("0o17", 15),
    ("0xff_ff", 0xFFFF),
    ("1_000", 1000),
    ("'A'", 65),
    ("'\\n'", 10),
    ("'\\x41'", 65),
    ("'\\''", 39),
    ("256 >> 4", 16),
    ("(1 << 63) >> 62", 2),
    ("10 - 2 - 3", 5),
    ("100 / 10 / 5", 2),
])
def test_expression_values(expr, value):
    img = assemble(f"X = {expr}", "t.s")
    assert img.symbols["X"] == value


def test_symbols_forward_references_and_dot():
    src = """
.org 0x100
start:
    mov rax, end - start
    mov rbx, SIZE
    jmp .
here = .
    .quad .
end:
SIZE = end - start
"""
    img = assemble(src, "t.s")
    a, b, c = insns(img)
    assert a.imm == 0x38 and b.imm == 0x38
    assert c.imm == -16                    # jmp . jumps to itself
    assert img.symbols["here"] == 0x130
    assert struct.unpack_from("<Q", img.bytes_at(0x130, 8))[0] == 0x130


def test_equ_forms():
    img = assemble(".equ A, 3\nB = A * 2\n.equ C, B + A", "t.s")
    assert (img.symbols["A"], img.symbols["B"], img.symbols["C"]) == (3, 6, 9)
    assert img.label_names == set()


# -------------------------------------------------------------- labels
def test_local_labels_belong_to_the_last_global_label():
    src = """
f:
.loop:
    jmp .loop
g:
.loop:
    jmp .loop
    jmp f.loop
"""
    img = assemble(src, "t.s")
    assert img.symbols["f.loop"] == 0 and img.symbols["g.loop"] == 0x10
    j1, j2, j3 = insns(img)
    assert j1.imm == -16 and j2.imm == -16 and j3.imm == 0 - 0x30


def test_numeric_labels():
    src = """
1:  nop
    jmp 1b
    jmp 1f
1:  jmp 1b
2:  jmp 2b
    jmp 1b
"""
    img = assemble(src, "t.s")
    targets = [a + 16 + i.imm for a, i in zip(sorted(img.instructions), insns(img)) if i.mnemonic == "jmp"]
    assert targets == [0x00, 0x30, 0x30, 0x40, 0x30]
    assert "1" not in img.symbols


def test_label_and_instruction_on_one_line_and_several_labels():
    img = assemble("a: b: nop\nc: hlt", "t.s")
    assert (img.symbols["a"], img.symbols["b"], img.symbols["c"]) == (0, 0, 0x10)


# -------------------------------------------------------------- sections and .org
def test_sections_are_placed_page_after_page():
    src = """
.text
    nop
.data
d:  .byte 1
.rodata
r:  .ascii "x"
.bss
b:  .space 64
"""
    img = assemble(src, "t.s")
    assert [(s.name, s.base, len(s.data)) for s in img.sections] == [
        (".text", 0, 16), (".data", 0x1000, 1), (".rodata", 0x2000, 1), (".bss", 0x3000, 64)]


def test_interleaved_sections_keep_growing_each_in_its_place():
    src = """
.text
    nop
.data
    .quad 1
.text
t2: nop
.data
d2: .quad 2
"""
    img = assemble(src, "t.s")
    assert [(s.name, s.base, len(s.data)) for s in img.sections] == [(".text", 0, 32), (".data", 0x1000, 16)]
    assert img.symbols == {"t2": 0x10, "d2": 0x1008}


def test_org_places_a_section_and_pads_forward():
    src = """
.section .boot
.org 0x100000
_start: nop
.org 0x100040
later: hlt
.text
.org 0xffff888000200000
kmain: nop
.data
x: .quad 0
"""
    img = assemble(src, "t.s")
    boot, text, data = img.sections
    assert (boot.name, boot.base, len(boot.data)) == (".boot", 0x100000, 0x50)
    assert boot.data[0x10:0x40] == bytes(0x30)
    assert text.base == 0xFFFF888000200000
    assert data.base == 0xFFFF888000201000
    assert img.entry == 0x100000


def test_section_alignment_follows_its_largest_align():
    img = assemble("nop\n.data\n.align 0x4000\nx: .byte 1", "t.s")
    assert img.symbols["x"] == 0x4000


def test_align_pads_code_with_nops_and_data_with_zeros():
    img = assemble(".org 0x1000\nnop\n.align 64\nhlt\n.data\n.byte 1\n.align 8\n.byte 2", "t.s")
    text, data = img.sections
    assert len(text.data) == 0x50
    nop = encode(I("nop"))
    assert bytes(text.data[0x10:0x40]) == nop * 3
    assert bytes(data.data) == b"\x01" + bytes(7) + b"\x02"


def test_align_in_code_after_data_pads_to_the_slot_then_nops():
    img = assemble(".byte 1\n.align 32\nnop", "t.s")
    assert bytes(img.sections[0].data[:16]) == b"\x01" + bytes(15)
    assert decode(img.bytes_at(16, 16)) == I("nop")
    assert decode(img.bytes_at(32, 16)) == I("nop")


def test_entry_rules():
    assert assemble(".org 0x500\nnop\n_start: nop", "t.s").entry == 0x510
    assert assemble(".org 0x500\nnop\nmain: nop\n.entry main", "t.s").entry == 0x510
    assert assemble(".org 0x500\nnop", "t.s").entry == 0x500
    assert assemble("", "t.s").entry == 0


# -------------------------------------------------------------- data directives
def test_data_directives_little_endian():
    src = """
.data
.byte 1, 0xff, -1, 'a'
.word 0x1234, -2
.dword 0xdeadbeef
.quad 0x0102030405060708, -1
.ascii "ab\\n\\t\\0\\\\\\"\\x41"
.asciz "z"
.space 3
.space 2, 0xaa
.zero 2
"""
    img = assemble(src, "t.s")
    data = bytes(img.sections[0].data)
    expected = (bytes([1, 0xFF, 0xFF, 0x61]) + struct.pack("<Hh", 0x1234, -2) + struct.pack("<I", 0xDEADBEEF)
                + struct.pack("<Qq", 0x0102030405060708, -1) + b'ab\n\t\0\\"A' + b"z\0" + bytes(3)
                + b"\xaa\xaa" + bytes(2))
    assert data == expected


def test_data_may_hold_labels_defined_later():
    img = assemble(".org 0x1000\ntable: .quad a, b\na: nop\nb: nop", "t.s")
    assert struct.unpack("<QQ", img.bytes_at(0x1000, 16)) == (0x1010, 0x1020)


def test_line_map_covers_instructions_and_data():
    img = assemble("nop\n.data\nx: .quad 1\n.byte 2\n.space 0\n", "t.s")
    assert img.line_map == {0: SourceLine("t.s", 1, "nop"), 0x1000: SourceLine("t.s", 3, "x: .quad 1"),
                            0x1008: SourceLine("t.s", 4, ".byte 2")}
    assert img.instructions == {0}


# -------------------------------------------------------------- comments, case
def test_comments_and_case():
    src = "; whole line\n  # also a comment\nMOV RAX, 1 ; trailing\n.ascii \"a;b#c\" ; the ; inside a string stays\n"
    img = assemble(src, "t.s")
    assert insns(img) == [I("mov", "ri", 8, RAX, imm=1)]
    assert bytes(img.sections[0].data[16:]) == b"a;b#c"


# -------------------------------------------------------------- include
def test_include_relative_then_include_dirs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "lib").mkdir()
    (tmp_path / "src" / "consts.inc").write_text("ANSWER = 42\n")
    (tmp_path / "lib" / "util.inc").write_text("util:\n    ret\n")
    (tmp_path / "src" / "main.s").write_text('.include "consts.inc"\n.include "util.inc"\n_start: mov rax, ANSWER\n')
    img = assemble_file("src/main.s", include_dirs=["lib"])
    assert img.symbols["ANSWER"] == 42 and img.symbols["util"] == 0 and img.entry == 0x10
    assert set(img.sources) == {"src/main.s", "src/consts.inc", "lib/util.inc"}
    assert img.line_map[0] == SourceLine("lib/util.inc", 2, "    ret")
    assert img.source_line(0x13) == SourceLine("src/main.s", 3, "_start: mov rax, ANSWER")


def test_error_inside_included_file_names_that_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "inner.inc").write_text("nop\n    mov rxx, 1\n")
    (tmp_path / "m" / "outer.s").write_text('nop\n.include "inner.inc"\n')
    with pytest.raises(AsmError) as e:
        assemble_file("m/outer.s")
    assert str(e.value) == "m/inner.inc:2:9: unknown register 'rxx'"
    assert (e.value.file, e.value.line, e.value.col) == ("m/inner.inc", 2, 9)


def test_include_cycle(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.s").write_text('.include "b.s"\n')
    (tmp_path / "b.s").write_text('nop\n.include "a.s"\n')
    with pytest.raises(AsmError, match=r"^b\.s:2:10: include cycle: 'a\.s' is already being assembled$"):
        assemble_file("a.s")


def test_same_file_may_be_included_twice_without_a_cycle(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "n.inc").write_text("nop\n")
    (tmp_path / "a.s").write_text('.include "n.inc"\n.include "n.inc"\n')
    assert len(assemble_file("a.s").instructions) == 2


def test_missing_and_undecodable_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AsmError, match=r"^nope\.s:1:1: cannot read file"):
        assemble_file("nope.s")
    (tmp_path / "bin.s").write_bytes(b"nop\nmov rax, 1 ; \xff\n")
    with pytest.raises(AsmError, match=r"^bin\.s:2:14: file is not UTF-8 text$"):
        assemble_file("bin.s")


# -------------------------------------------------------------- errors
ERRORS = [
    ("mov rxx, 5", "t.s:1:5: unknown register 'rxx'"),
    ("nop\nmov rax, rxx", "t.s:2:10: unknown register 'rxx'"),
    ("mov [rxx + 8], al", "t.s:1:6: unknown register 'rxx'"),
    ("mov ah, 1", "t.s:1:5: unknown register 'ah' (the high-byte registers ah, bh, ch, dh are not in this ISA)"),
    ("inc [rax]", "t.s:1:5: operand size is ambiguous; say byte, word, dword or qword"),
    ("mov [rax], 5", "t.s:1:5: operand size is ambiguous; say byte, word, dword or qword"),
    ("  mov rax, ebx", "t.s:1:12: operand size mismatch: rax is qword but ebx is dword"),
    ("mov eax, qword [rbx]", "t.s:1:10: operand size mismatch: eax is dword but the memory operand is qword"),
    ("frob rax", "t.s:1:1: unknown instruction 'frob'"),
    ("add rax, 0x80000000", "t.s:1:10: immediate does not fit in 32 bits"),
    ("push 0x80000000", "t.s:1:6: immediate does not fit in 32 bits"),
    ("mov qword [rax], 0x100000000", "t.s:1:18: immediate does not fit in 32 bits"),
    ("mov al, 256", "t.s:1:9: immediate does not fit in 8 bits"),
    ("mov rax, 1 << 64", "t.s:1:10: immediate does not fit in 64 bits"),
    ("jmp nowhere", "t.s:1:5: undefined symbol 'nowhere'"),
    (".quad 1 + nowhere", "t.s:1:11: undefined symbol 'nowhere'"),
    ("A = B + 1\nmov rax, A", "t.s:1:5: undefined symbol 'B'"),
    ("x: nop\nx: nop", "t.s:2:1: duplicate label 'x' (first defined at t.s:1)"),
    ("A = 1\nA = 2", "t.s:2:1: duplicate symbol 'A' (first defined at t.s:1)"),
    (".byte 256", "t.s:1:7: value 0x100 does not fit in a byte"),
    (".word 1, -40000", "t.s:1:10: value -0x9c40 does not fit in a word"),
    (".org 0x10\nnop\n.org 0", "t.s:3:6: .org cannot move backwards (from 0x20 to 0x0)"),
    (".data\n.byte 1\n.org 0x100", "t.s:3:1: section '.data' already has contents placed after the previous "
                                   "section; .org must come before its first byte"),
    (".byte 1\n  nop", "t.s:2:3: instruction at offset 0x1 of section '.text' is not 16-byte aligned; "
                       "put '.align 16' before it"),
    (".org 0x1001\nnop", "t.s:2:1: instruction at 0x1001 is not 16-byte aligned; put '.align 16' before it"),
    (".org 0\nnop\n.data\n.org 8\n.byte 1", "t.s:4:1: section '.data' (0x8-0x8) overlaps section '.text' "
                                            "(0x0-0xf); move one with .org"),
    ("shl rax, bl", "t.s:1:10: the shift count register must be cl"),
    ("in al, cx", "t.s:1:8: the port register must be dx"),
    ("in bl, dx", "t.s:1:4: the data register of in/out must be al, ax or eax"),
    ("out 0x100, al", "t.s:1:5: the port number must be 0-255 (use dx for larger ports), not 0x100"),
    ("mov cr3, eax", "t.s:1:10: control registers move only to or from a 64-bit register"),
    ("add cr3, rax", "t.s:1:5: control registers can only be moved to or from a 64-bit register with mov"),
    ("mov [rax], [rbx]", "t.s:1:12: 'mov' cannot take (memory, memory); it takes (register, register), "
                         "(register, immediate), (register, memory), (memory, register), (memory, immediate)"),
    ("xchg rax, 5", "t.s:1:11: 'xchg' cannot take (register, immediate); it takes (register, register), "
                    "(register, memory), (memory, register)"),
    ("int 256", "t.s:1:5: the interrupt vector must be 0-255, not 0x100"),
    ("ret 0x10000", "t.s:1:5: the number of bytes to pop must be 0-65535, not 0x10000"),
    ("shl rax, 300", "t.s:1:10: shift count must be 0-255, not 0x12c"),
    (".align 3", "t.s:1:8: alignment must be a power of two, not 0x3"),
    (".frob 1", "t.s:1:1: unknown directive '.frob'"),
    ("mov rax, 1/0", "t.s:1:11: division by zero"),
    ("mov rax, 5 % (2 - 2)", "t.s:1:12: division by zero"),
    ("mov rax, (1", "t.s:1:12: expected ')' but found end of line"),
    ("mov rax, [rbx*3]", "t.s:1:15: scale must be 1, 2, 4 or 8"),
    ("mov rax, [rbx+rcx+rdx]", "t.s:1:19: a memory operand has at most two registers"),
    ("mov rax, [rbx*2+rcx*2]", "t.s:1:17: only one register can be scaled"),
    ("mov rax, [eax]", "t.s:1:11: memory addresses use 64-bit registers, not 'eax'"),
    ("mov rax, [rbx - rcx]", "t.s:1:17: a register cannot be subtracted"),
    ("mov rax, [rbx*rcx]", "t.s:1:14: registers cannot be multiplied together"),
    ("mov rax, [rbx*2*2]", "t.s:1:16: a memory operand is base + index*scale + displacement"),
    ("call [rax + rip]", "t.s:1:13: rip cannot be scaled or combined with other registers"),
    ("mov rax, rip", "t.s:1:10: rip can only be a memory base, as in [rip + label]"),
    ("mov rax, rbx + 1", "t.s:1:10: register 'rbx' cannot be part of an expression"),
    ("mov rax, [0x100000000]", "t.s:1:10: displacement does not fit in 32 bits"),
    (".org 0x100000000\nmov rax, [x]\nx: nop", "t.s:2:10: address 0x100000010 does not fit in a 32-bit "
                                                "displacement; use [rip + label]"),
    ("lea rax, [rip + a + b]\na: nop\nb: nop", "t.s:1:10: a rip-relative operand names one address, as in "
                                               "[rip + label]"),
    ("jmp 1 << 40", "t.s:1:5: branch target 0x10000000000 is out of range (more than 2 GiB away)"),
    ('.include "nope.s"', "t.s:1:10: cannot find include file 'nope.s'"),
    ("mov rax, 'ab'", "t.s:1:10: a character literal holds exactly one character"),
    ('.ascii "abc', "t.s:1:8: unterminated string"),
    ('.ascii "a\\qb"', "t.s:1:10: unknown escape '\\q'"),
    (".ascii 5", "t.s:1:8: '.ascii' takes quoted strings"),
    ("lea al, [rax]", "t.s:1:5: lea needs a 16, 32 or 64-bit destination"),
    ("movzx rax, rbx", "t.s:1:12: 'movzx' takes a byte or word source"),
    ("movsx eax, eax", "t.s:1:7: 'movsx' needs a destination wider than its source"),
    ("movzx eax, [rbx]", "t.s:1:12: operand size is ambiguous; say byte, word, dword or qword"),
    ("setne eax", "t.s:1:7: 'setne' writes one byte: use an 8-bit register such as al, or byte"),
    ("push eax", "t.s:1:6: 'push' moves 64-bit values; use a 64-bit register or qword"),
    ("jmp eax", "t.s:1:5: 'jmp' needs a 64-bit register or a qword in memory"),
    ("imul al, bl", "t.s:1:6: imul with two or three operands needs 16, 32 or 64-bit operands"),
    ("cmovz al, bl", "t.s:1:7: 'cmovz' needs 16, 32 or 64-bit operands"),
    ("ltr rax", "t.s:1:5: ltr takes a 16-bit selector register such as ax"),
    ("A = B\nB = A\nmov rax, A", "t.s:2:5: symbol 'A' is defined in terms of itself"),
    ("mov rax, .local", "t.s:1:10: local label '.local' needs a global label before it"),
    (".x: nop", "t.s:1:1: local label '.x' needs a global label before it"),
    ("jne 1b", "t.s:1:5: no label '1:' before this line"),
    ("jmp 1f", "t.s:1:5: no label '1:' after this line"),
    ("rep add rax, 1", "t.s:1:5: rep can only prefix movsb, movsq, stosb or stosq"),
    ("mov rax, 5 6", "t.s:1:12: unexpected '6'"),
    ("mov rax,", "t.s:1:9: missing operand"),
    ("mov , rax", "t.s:1:5: missing operand"),
    ("mov rax, @", "t.s:1:10: unexpected character '@'"),
    ("nop rax", "t.s:1:5: 'nop' takes no operands"),
    ("mov", "t.s:1:1: 'mov' takes 2 operands"),
    ("imul rax, rbx, 1, 2", "t.s:1:19: 'imul' takes 1, 2 or 3 operands"),
    (".space -1", "t.s:1:8: negative size -0x1"),
    (".space 1, 300", "t.s:1:11: fill value 0x12c does not fit in a byte"),
    (".space later\nlater:", "t.s:1:8: 'later' must be defined before this line (it decides where things go)"),
    (".space 1 << 30", "t.s:1:8: section '.text' would grow beyond 64 MiB"),
    ("mov qword rax, 5", "t.s:1:11: 'qword' must be followed by a memory operand [ ... ]"),
    ("rax: nop", "t.s:1:1: 'rax' is a reserved word and cannot be a symbol"),
    ("0x5: nop", "t.s:1:1: expected a label, directive or instruction but found '0x5'"),
    ("mov rax, 12abc", "t.s:1:10: bad number '12abc'"),
    ("mov rax, 0x", "t.s:1:10: bad number '0x'"),
    ('mov rax, "s"', "t.s:1:10: a string cannot be used as a number"),
    ("mov rax, ~", "t.s:1:11: expected an expression"),
    ("mov rax, 1 << -1", "t.s:1:12: shift count -0x1 is out of range"),
    (".equ", "t.s:1:1: '.equ' takes 2 arguments"),
    (".equ 5, 4", "t.s:1:6: expected a symbol name"),
    (".entry 0\n.entry 0", "t.s:2:1: the entry point is already set at t.s:1"),
    ("mov rax, cr1", "t.s:1:10: unknown register 'cr1'"),
    ("movs", "t.s:1:1: unknown instruction 'movs'"),
    ("jcc 0", "t.s:1:1: unknown instruction 'jcc'"),
    ("movtocr rax, rbx", "t.s:1:1: unknown instruction 'movtocr'"),
    ("mov rax, " + "(" * 150 + "1" + ")" * 150, "t.s:1:111: expression nested too deeply"),
    ("mov rax, " + "+".join(["1"] * 300), "t.s:1:411: expression too long"),
    (".section", "t.s:1:1: '.section' takes 1 argument"),
    ("ret 1, 2", "t.s:1:8: 'ret' takes 0 or 1 operands"),
    (".text 5", "t.s:1:7: '.text' takes 0 arguments"),
]


@pytest.mark.parametrize("source, message", ERRORS, ids=[m.split(": ", 1)[1][:50] for _, m in ERRORS])
def test_error(source, message):
    assert err(source) == message


def test_error_fields_and_user_error():
    with pytest.raises(AsmError) as e:
        assemble("nop\n   frob", "machines/foo.s")
    assert isinstance(e.value, UserError)
    assert (e.value.file, e.value.line, e.value.col, e.value.message) == (
        "machines/foo.s", 2, 4, "unknown instruction 'frob'")


def test_external_symbols_for_assemble_line():
    assert assemble_line("jmp target", 0x1000, {"target": 0x2000}).imm == 0x2000 - 0x1010
    assert assemble_line("lea rax, [rip + v]", 0x1000, {"v": 0x1010}).mem == M(RIP_BASE)


# -------------------------------------------------------------- the image
def test_image_lookups():
    src = ".org 0x1000\n_start:\n  nop\n  nop\nloop:\n  jmp loop\n.data\nmsg: .ascii \"hello\"\nN = 5\n"
    img = assemble(src, "t.s")
    assert img.source_line(0x1018).line == 4
    assert img.source_line(0x1020).text == "  jmp loop"
    assert img.source_line(0x2004).text == 'msg: .ascii "hello"'
    assert img.source_line(0x2005) is None
    assert img.source_line(0x0) is None
    assert img.symbol_at(0x1000) == "_start"
    assert img.symbol_at(0x1010) == "_start+0x10"
    assert img.symbol_at(0x1028) == "loop+0x8"
    assert img.symbol_at(0x2002) == "msg+0x2"
    assert img.symbol_at(0x5000) is None
    assert img.bytes_at(0x2000, 5) == b"hello"
    assert img.bytes_at(0x2003, 4) == b"lo\0\0"
    assert img.labels() == {"_start": 0x1000, "loop": 0x1020, "msg": 0x2000}
    assert img.symbols["N"] == 5


def test_image_container_round_trip():
    img = assemble(".org 0x1000\n_start: mov rax, 1\n.data\nx: .quad 7\nK = 3\n", "t.s")
    blob = img.to_bytes()
    back = Image.from_bytes(blob)
    assert back == img
    assert back.to_bytes() == blob
    assert back.source_line(0x1000) == SourceLine("t.s", 2, "_start: mov rax, 1")


@pytest.mark.parametrize("blob", [b"", b"nonsense", b"XLIMAGE1\x05\0\0\0{bad}", b"XLIMAGE1\x02\0\0\0{}",
                                  Image().to_bytes() + b"extra"])
def test_image_container_rejects_garbage(blob):
    with pytest.raises(ImageFormatError):
        Image.from_bytes(blob)


def test_assembly_is_deterministic():
    src = ".org 0x1000\n_start: mov rax, 1\n.data\nx: .quad _start\n"
    assert assemble(src, "t.s").to_bytes() == assemble(src, "t.s").to_bytes()


# -------------------------------------------------------------- listing
def test_listing():
    src = ('.org 0x400000\n_start:\n    mov rax, 5   ; five\n    mov rbx, 0x123456789\n'
           '.data\nmsg: .ascii "hello, world"\n')
    lines = render_listing(assemble(src, "t.s")).splitlines()
    assert lines[0] == "Section .text (0x0000000000400000-0x000000000040001f, 32 bytes):"
    assert lines[1] == "0000000000400000 <_start>:"
    assert lines[2] == ("0000000000400000  01 39 00 00 ff ff 00 00 00000000 05000000  mov rax, 5   ; five")
    assert lines[3] == ("0000000000400010  01 79 03 00 ff ff 00 00 8967452301000000   mov rbx, 0x123456789")
    assert lines[4] == ""
    assert lines[6] == "0000000000401000 <msg>:"
    assert lines[7].startswith("0000000000401000  68 65 6c 6c 6f 2c 20 77")
    assert lines[7].endswith('msg: .ascii "hello, world"')
    assert lines[8] == "0000000000401008  6f 72 6c 64"


def test_listing_elides_long_data():
    out = render_listing(assemble(".data\nbuf: .space 100\n", "t.s"))
    assert "... 76 more bytes" in out
    assert len(out.splitlines()) == 6


# -------------------------------------------------------------- junk never escapes as another exception
WORDS = ["mov", "add", "jmp", "jne", "rep", "movsb", "imul", "shl", "in", "out", "lea", "push", "ret", "int",
         "rax", "eax", "al", "cl", "dx", "rip", "cr3", "cr9", "r8d", "qword", "byte", "ptr", ".org", ".align",
         ".byte", ".quad", ".ascii", ".space", ".equ", ".include", ".section", ".text", ".data", ".entry",
         "label", ".loop", "1f", "1b", "0x", "0b", "1:", "x:", "=", ".", "[", "]", "(", ")", "+", "-", "*",
         "/", "%", "<<", ">>", "~", ",", ":", ";", "#", '"', "'", "\\", "0", "7", "16", "0xffffffffffffffff",
         "99999999999999999999", "'a'", '"s"', "\t", "é", "\0"]
junk_line = st.lists(st.sampled_from(WORDS), max_size=10).map(" ".join)
junk_text = st.one_of(st.lists(junk_line, max_size=8).map("\n".join), st.text(max_size=80))


@given(junk_text)
@settings(max_examples=3000, deadline=None, derandomize=True)
def test_junk_raises_only_asm_error(source):
    try:
        assemble(source, "junk/j.s")
    except AsmError:
        pass


@given(st.lists(st.sampled_from(["nop", "x: nop", "1: nop", "jmp 1b", "jmp 1f", "jmp x", "jmp .", ".quad x",
                                 ".byte 1", ".align 16", ".data", ".text", ".org 0x2000", "y = x + 1",
                                 "mov rax, [rip + x]", ".space 3", "lea rax, [rip + y]", ".loop: jmp .loop"]),
                max_size=20))
@settings(max_examples=1000, deadline=None, derandomize=True)
def test_plausible_programs_raise_only_asm_error(lines):
    try:
        img = assemble("\n".join(lines), "p.s")
    except AsmError:
        return
    for addr in img.instructions:
        decode(img.bytes_at(addr, INSN_SIZE))


def test_include_found_through_an_absolute_include_dir_is_named_relatively(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "x.inc").write_text("nop\n")
    img = assemble('.include "x.inc"\n', "main.s", include_dirs=[tmp_path / "lib"])
    assert set(img.sources) == {"main.s", "lib/x.inc"}


@pytest.mark.parametrize("text, address, message", [
    ("nop\nnop", 0, "<input>:1:1: expected exactly one instruction"),
    (".byte 1", 0, "<input>:1:1: expected exactly one instruction"),
    ("nop", 8, "<input>:1:1: instruction at 0x8 is not 16-byte aligned; put '.align 16' before it"),
    ("nop", -16, "<input>:1:1: address -0x10 is outside the address space"),
])
def test_assemble_line_errors(text, address, message):
    with pytest.raises(AsmError) as e:
        assemble_line(text, address)
    assert str(e.value) == message


# ---------------------------------------------------------------- .macro and .rept
def _insns(src: str) -> list[Instruction]:
    data = assemble(src, "m.s").sections[0].data
    return [decode(bytes(data[i:i + INSN_SIZE])) for i in range(0, len(data), INSN_SIZE)]


def test_macro_with_arguments_defaults_and_unique_labels():
    src = (".macro pair a, b=rbx\n    push \\a\n    push \\b\n.endm\n"
           ".macro spin reg\nagain\\@:\n    dec \\reg\n    jnz again\\@\n.endm\n"
           "pair rax\npair rcx, rdx ; a comment\nspin r8\nspin r9\n")
    assert _insns(src) == _insns("push rax\npush rbx\npush rcx\npush rdx\n"
                                 "a1:\ndec r8\njnz a1\na2:\ndec r9\njnz a2\n")


def test_rept_nested_in_a_macro_and_counts_from_constants():
    src = ".equ N, 2\n.macro twice op\n.rept N\n    \\op\n.endr\n.endm\ntwice nop\n.rept N + 1\ninc rax\n.endr\n.rept 0\nud2\n.endr\n"
    assert _insns(src) == _insns("nop\nnop\ninc rax\ninc rax\ninc rax\n")


def test_mov_r64_imm64_takes_a_full_immediate():
    (insn,) = _insns("mov r9, 0x123456789abcdef0\n")
    assert insn.imm == 0x123456789ABCDEF0 and insn.a == 9


@pytest.mark.parametrize("src,message", [
    (".macro\n.endm\n", "takes a name"),
    (".rept 2\nnop\n", "'.rept' has no '.endr'"),
    (".endm\n", "with no block open"),
    (".macro m a\n\\a\n.endm\nm\n", "no value for parameter 'a'"),
    (".macro m a\n\\a\n.endm\nm 1, 2\n", "takes 1 argument"),
    (".rept 1 << 40\nnop\n.endr\n", "more than 1000000 lines"),
    (".macro m\nm\n.endm\nm\n", "nested more than 64 deep"),
    (".macro mov\n.endm\n", "already a macro or an instruction"),
    (".rept 2\nnop\n.endm\n", "'.endm' closes a '.rept' block"),
])
def test_macro_and_rept_mistakes_are_one_line_errors(src, message):
    with pytest.raises(AsmError, match=message):
        assemble(src, "bad.s")


def test_kernels_using_the_register_macros_assemble_to_the_same_code():
    # the macros expand to exactly the push/pop sequence they replaced
    from lab.paths import KERNELS
    img = assemble_file(KERNELS / "native.s", include_dirs=[KERNELS])
    trap_pf = img.symbols["trap_pf"]
    sec = next(s for s in img.sections if s.base <= trap_pf < s.base + len(s.data))
    off = trap_pf - sec.base
    pushes = [decode(bytes(sec.data[off + i * INSN_SIZE:off + (i + 1) * INSN_SIZE])) for i in range(9)]
    assert [(p.op, p.a) for p in pushes] == [(opcodes.BY_NAME["push"].code, r) for r in (0, 1, 2, 6, 7, 8, 9, 10, 11)]
