"""Every arithmetic instruction and flag, against an independent model of x86.

The model below is written from the Intel SDM's definitions (signed ranges,
carries out of bit n-1 and bit 3), not from the simulator's lazy-flag code,
so the two can disagree. Flags the SDM calls undefined are masked out.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from machine_helpers import machine_with, run_to_halt

CF, PF, AF, ZF, SF, OF = 1, 4, 16, 64, 128, 2048
ALL = CF | PF | AF | ZF | SF | OF
REG = {1: "al", 2: "ax", 4: "eax", 8: "rax"}
REGB = {1: "bl", 2: "bx", 4: "ebx", 8: "rbx"}


def signed(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) & 1 else v


def szp(r: int, bits: int) -> int:
    f = 0
    if r == 0:
        f |= ZF
    if r >> (bits - 1) & 1:
        f |= SF
    if bin(r & 0xFF).count("1") % 2 == 0:
        f |= PF
    return f


def model(op: str, size: int, a: int, b: int, cin: int) -> tuple[int, int, int]:
    """(result, flags, mask of defined flags) for ``op a, b``."""
    bits = 8 * size
    m = (1 << bits) - 1
    if op in ("add", "adc"):
        c = cin if op == "adc" else 0
        full = a + b + c
        r = full & m
        f = szp(r, bits)
        if full > m:
            f |= CF
        if (a & 0xF) + (b & 0xF) + c > 0xF:
            f |= AF
        if not -(1 << (bits - 1)) <= signed(a, bits) + signed(b, bits) + c < (1 << (bits - 1)):
            f |= OF
        return r, f, ALL
    if op in ("sub", "sbb", "cmp"):
        c = cin if op == "sbb" else 0
        r = (a - b - c) & m
        f = szp(r, bits)
        if a < b + c:
            f |= CF
        if (a & 0xF) < (b & 0xF) + c:
            f |= AF
        if not -(1 << (bits - 1)) <= signed(a, bits) - signed(b, bits) - c < (1 << (bits - 1)):
            f |= OF
        return (a if op == "cmp" else r), f, ALL
    if op in ("and", "or", "xor", "test"):
        r = {"and": a & b, "or": a | b, "xor": a ^ b, "test": a & b}[op]
        return (a if op == "test" else r), szp(r, bits), ALL & ~AF
    raise AssertionError(op)


def run_binary(op: str, size: int, a: int, b: int, cin: int) -> tuple[int, int]:
    src = f"""
    mov rax, {a}
    mov rbx, {b}
    push {cin}
    popfq
    {op} {REG[size]}, {REGB[size]}
    pushfq
    pop rcx
    hlt
    """
    m = run_to_halt(machine_with(src))
    assert m.cpu.stopped and "hlt" in m.cpu.stopped
    return m.cpu.regs[0] & ((1 << (8 * size)) - 1), m.cpu.regs[1]


sizes = st.sampled_from([1, 2, 4, 8])


@settings(max_examples=60, deadline=None, derandomize=True)
@given(op=st.sampled_from(["add", "adc", "sub", "sbb", "cmp", "and", "or", "xor", "test"]),
       size=sizes, data=st.data(), cin=st.integers(0, 1))
def test_binary_ops_match_the_model(op, size, data, cin):
    bits = 8 * size
    a = data.draw(st.integers(0, (1 << bits) - 1) | st.sampled_from([0, 1, (1 << bits) - 1, 1 << (bits - 1)]))
    b = data.draw(st.integers(0, (1 << bits) - 1) | st.sampled_from([0, 1, (1 << bits) - 1, 1 << (bits - 1)]))
    got_r, got_f = run_binary(op, size, a, b, cin)
    want_r, want_f, mask = model(op, size, a, b, cin)
    assert got_r == want_r
    assert got_f & mask == want_f & mask, f"flags {got_f & mask:#x} != {want_f & mask:#x}"


@pytest.mark.parametrize("op,a,expect_r,set_flags,clear_flags", [
    ("inc", 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, OF | SF | AF, ZF),
    ("inc", 0xFFFFFFFFFFFFFFFF, 0, ZF | AF | PF, OF | SF),
    ("dec", 0x8000000000000000, 0x7FFFFFFFFFFFFFFF, OF | AF, SF | ZF),
    ("dec", 1, 0, ZF | PF, OF | SF),
    ("neg", 0, 0, ZF | PF, CF | OF),
    ("neg", 5, 0xFFFFFFFFFFFFFFFB, CF | SF | AF, ZF | OF),
    ("neg", 0x8000000000000000, 0x8000000000000000, CF | OF | SF, ZF),
    ("not", 0xF0, 0xFFFFFFFFFFFFFF0F, 0, 0),
])
def test_unary_ops(op, a, expect_r, set_flags, clear_flags):
    for cin in (0, 1):
        m = run_to_halt(machine_with(f"mov rax, {a}\npush {cin}\npopfq\n{op} rax\npushfq\npop rcx\nhlt"))
        assert m.cpu.regs[0] == expect_r
        f = m.cpu.regs[1]
        assert f & set_flags == set_flags
        assert f & clear_flags == 0
        if op in ("inc", "dec"):
            assert f & CF == cin, "inc and dec leave CF alone"
        if op == "not":
            assert f & CF == cin, "not changes no flags"


@settings(max_examples=60, deadline=None, derandomize=True)
@given(op=st.sampled_from(["shl", "shr", "sar"]), size=sizes, data=st.data())
def test_shifts(op, size, data):
    bits = 8 * size
    a = data.draw(st.integers(0, (1 << bits) - 1))
    c = data.draw(st.integers(1, bits - 1))
    m = run_to_halt(machine_with(f"mov rax, {a}\n{op} {REG[size]}, {c}\npushfq\npop rcx\nhlt"))
    r = m.cpu.regs[0] & ((1 << bits) - 1)
    f = m.cpu.regs[1]
    if op == "shl":
        want = (a << c) & ((1 << bits) - 1)
        cf = a >> (bits - c) & 1
    elif op == "shr":
        want = a >> c
        cf = a >> (c - 1) & 1
    else:
        want = (signed(a, bits) >> c) & ((1 << bits) - 1)
        cf = signed(a, bits) >> (c - 1) & 1
    assert r == want
    assert f & CF == cf
    assert f & (ZF | SF | PF) == szp(want, bits)
    if c == 1:
        of = {"shl": (want >> (bits - 1) & 1) ^ cf, "shr": a >> (bits - 1) & 1, "sar": 0}[op]
        assert bool(f & OF) == bool(of)


def test_shift_by_cl_of_zero_changes_nothing():
    m = run_to_halt(machine_with("mov rax, 5\ncmp rax, 6\nmov cl, 0\nshl rax, cl\npushfq\npop rdx\nhlt"))
    assert m.cpu.regs[0] == 5
    assert m.cpu.regs[2] & CF, "the flags of cmp survive a zero-count shift"


def test_rotates():
    m = run_to_halt(machine_with("mov rax, 0x8000000000000001\nrol rax, 1\npushfq\npop rcx\nhlt"))
    assert m.cpu.regs[0] == 3 and m.cpu.regs[1] & CF
    m = run_to_halt(machine_with("mov rax, 1\nror rax, 1\npushfq\npop rcx\nhlt"))
    assert m.cpu.regs[0] == 0x8000000000000000 and m.cpu.regs[1] & CF


def test_mul_imul_div_idiv():
    m = run_to_halt(machine_with("mov rax, 0xFFFFFFFFFFFFFFFF\nmov rbx, 2\nmul rbx\npushfq\npop rcx\nhlt"))
    assert m.cpu.regs[0] == 0xFFFFFFFFFFFFFFFE and m.cpu.regs[2] == 1 and m.cpu.regs[1] & (CF | OF) == CF | OF
    m = run_to_halt(machine_with("mov rax, -3\nmov rbx, 7\nimul rax, rbx\npushfq\npop rcx\nhlt"))
    assert m.cpu.regs[0] == (-21) & (2**64 - 1) and m.cpu.regs[1] & (CF | OF) == 0
    m = run_to_halt(machine_with("mov rbx, 10\nimul rax, rbx, -4\nhlt"))
    assert m.cpu.regs[0] == (-40) & (2**64 - 1)
    m = run_to_halt(machine_with("mov rax, 100\nxor edx, edx\nmov rbx, 7\ndiv rbx\nhlt"))
    assert (m.cpu.regs[0], m.cpu.regs[2]) == (14, 2)
    m = run_to_halt(machine_with("mov rax, -100\ncqo\nmov rbx, 7\nidiv rbx\nhlt"))
    assert (m.cpu.regs[0], m.cpu.regs[2]) == ((-14) & (2**64 - 1), (-2) & (2**64 - 1))


@pytest.mark.parametrize("cc,a,b,taken", [
    ("e", 5, 5, True), ("ne", 5, 5, False), ("b", 1, 2, True), ("ae", 1, 2, False),
    ("l", -1, 1, True), ("g", -1, 1, False), ("le", 3, 3, True), ("a", 3, 2, True),
    ("be", 2, 3, True), ("s", 1, 2, True), ("ns", 2, 1, True), ("ge", 1, -1, True),
    ("o", -(2**63), 1, True), ("no", 1, 1, True), ("p", 3, 0, True), ("np", 1, 0, True),
])
def test_conditional_jumps_after_cmp(cc, a, b, taken):
    src = f"mov rax, {a}\nmov rbx, {b}\nmov rcx, 0\ncmp rax, rbx\nj{cc} .t\nhlt\n.t:\nmov rcx, 1\nhlt"
    m = run_to_halt(machine_with(src))
    assert m.cpu.regs[1] == int(taken)
    # setcc and cmovcc agree with the jump
    src = f"mov rax, {a}\nmov rbx, {b}\nxor ecx, ecx\nmov rdx, 7\ncmp rax, rbx\nset{cc} cl\ncmov{cc} rsi, rdx\nhlt"
    m = run_to_halt(machine_with(src))
    assert m.cpu.regs[1] == int(taken)
    assert m.cpu.regs[6] == (7 if taken else 0)


def test_conditions_read_across_blocks_use_materialised_flags():
    # The cmp's flags are consumed after a taken jump, in a different block.
    src = "mov rax, 1\ncmp rax, 2\njmp .next\n.next:\njb .t\nhlt\n.t:\nmov rcx, 9\nhlt"
    m = run_to_halt(machine_with(src))
    assert m.cpu.regs[1] == 9


def test_sub_register_writes_merge_and_32_bit_zero_extends():
    m = run_to_halt(machine_with("mov rax, -1\nmov al, 0x12\nmov rbx, -1\nmov bx, 0x3456\n"
                                 "mov rcx, -1\nmov ecx, 0x789\nhlt"))
    assert m.cpu.regs[0] == 0xFFFFFFFFFFFFFF12
    assert m.cpu.regs[3] == 0xFFFFFFFFFFFF3456
    assert m.cpu.regs[1] == 0x789


def test_movzx_movsx_lea_xchg():
    m = run_to_halt(machine_with("mov rax, 0x80\nmovsx rbx, al\nmovzx rcx, al\nlea rdx, [rax + rcx*4 + 8]\n"
                                 "mov rsi, 1\nmov rdi, 2\nxchg rsi, rdi\nhlt"))
    r = m.cpu.regs
    assert r[3] == 0xFFFFFFFFFFFFFF80 and r[1] == 0x80 and r[2] == 0x80 + 0x200 + 8
    assert (r[6], r[7]) == (2, 1)


def test_stack_call_ret_push_pop():
    src = """
    mov rax, 11
    call f
    push 42
    pop rbx
    hlt
f:
    add rax, 1
    ret
    """
    m = run_to_halt(machine_with(src))
    assert m.cpu.regs[0] == 12 and m.cpu.regs[3] == 42 and m.cpu.regs[4] == 0x9000


def test_memory_operands_and_string_ops():
    src = """
    mov rdi, 0x10000
    mov rax, 0x1122334455667788
    mov rcx, 4
    rep stosq
    mov rsi, 0x10000
    mov rdi, 0x10100
    mov rcx, 32
    rep movsb
    mov rbx, 0x10100
    mov rdx, [rbx + 3*8]
    mov word [rbx], 0xabcd
    movzx r8, word [rbx]
    hlt
    """
    m = run_to_halt(machine_with(src))
    r = m.cpu.regs
    assert r[2] == 0x1122334455667788 and r[8] == 0xABCD and r[1] == 0
    assert m.mem.read_u64(0x10108) == 0x1122334455667788
