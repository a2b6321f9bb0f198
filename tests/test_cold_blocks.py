"""Cold blocks run as one-instruction pieces, compiled once per shape, until they prove
hot: they do exactly what the whole compiled block does, and cost far less to make."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from lab.hw import translate
from lab.hw.blockcache import BlockCache
from lab.isa.assembler import assemble
from lab.isa.encoding import decode
from machine_helpers import machine_with
from translation_modes import translation

pytestmark = pytest.mark.machine

WAYS = ("hot", "cold", "warming")


def _insn(text: str):
    image = assemble(f".org 0x1000\n_start:\n{text}\n", "t.s")
    sec = next(s for s in image.sections if s.data)
    return decode(bytearray(sec.data), 0), bytes(sec.data[:16])


def _compiles(monkeypatch) -> list[str]:
    """What ``compile`` is asked to make from now on, by the name it gives its code."""
    made: list[str] = []
    real = compile

    def counting(src, name, mode):
        made.append(name)
        return real(src, name, mode)
    monkeypatch.setattr(translate, "compile", counting, raising=False)
    return made


LOOP = "mov rcx, 30\nxor rax, rax\njmp .top\n.top:\nadd rax, rcx\ndec rcx\njnz .top\nhlt"


def test_a_block_is_compiled_whole_only_once_it_has_run_hot_after_times(monkeypatch):
    with translation("lab"):
        made = _compiles(monkeypatch)
        m = machine_with(LOOP)
        m.run(1_000)
    assert m.cpu.stopped and m.cpu.regs[0] == sum(range(31))
    # The loop's block alone went hot; the others ran once, as pieces.
    assert made.count("<translated block>") == 1
    loop = max(m.code.blocks.values(), key=lambda b: b.va)     # .top: the last block but hlt's
    loop = next(b for b in m.code.blocks.values() if b.va == loop.va - 16 * 3)
    assert loop.fn.__name__ == "block"
    assert all(b.fn.__name__ == "cold" for b in m.code.blocks.values() if b is not loop)


def test_a_block_already_compiled_in_the_cache_runs_whole_from_its_first_run(monkeypatch):
    with translation("hot"):
        machine_with(LOOP).run(1_000)
        translate.HOT_AFTER = 10
        translate._MADE = {}
        made = _compiles(monkeypatch)
        m = machine_with(LOOP)
        m.run(1_000)
    assert made == [] and all(b.fn.__name__ == "block" for b in m.code.blocks.values())


def test_instructions_of_one_shape_share_its_code_and_differ_in_their_values():
    add_a, _ = _insn("add rax, 5")
    add_b, _ = _insn("add r9, -0x1234")
    shl, _ = _insn("shl rbx, 3")
    shl0, _ = _insn("shl rbx, 0")
    text_a, ints_a = translate.piece_shape(add_a, 0x1000, True)
    text_b, ints_b = translate.piece_shape(add_b, 0x7000, True)
    assert text_a == text_b and ints_a != ints_b
    # A count of zero changes nothing, flags included: another shape, not another value.
    assert translate.piece_shape(shl, 0x1000, True)[0] != translate.piece_shape(shl0, 0x1000, True)[0]
    # Only the block's last instruction sets rip.
    assert "cpu.rip" in text_a and "cpu.rip" not in translate.piece_shape(add_a, 0x1000, False)[0]


def test_pieces_and_shapes_survive_the_process_on_disk(tmp_path, monkeypatch):
    insn, raw = _insn("mov rbx, [rip + 0x40]")
    for kind in ("-pieces", "-shapes"):
        monkeypatch.setattr(translate, kind[1:].upper(), BlockCache(tmp_path, kind=kind))
    monkeypatch.setattr(translate, "_MADE_PIECES", {})
    first = translate.piece(insn, 0x2000, raw, True)
    translate.PIECES.save()
    translate.SHAPES.save()
    # Another process: nothing generated or compiled, the same piece at another address.
    monkeypatch.setattr(translate, "PIECES", BlockCache(tmp_path, kind="-pieces"))
    monkeypatch.setattr(translate, "_MADE_PIECES", {})
    monkeypatch.setattr(translate, "piece_shape", None)
    monkeypatch.setattr(translate, "compile", None, raising=False)
    again = translate.piece(insn, 0x6000, raw, True)
    assert translate.PIECES.hits == 1
    for fn, at in ((first, 0x2000), (again, 0x6000)):
        m = machine_with("hlt")
        m.mem.write(at + 16 + 0x40, (0x1122 + at).to_bytes(8, "little"))
        fn(m.cpu)
        assert (m.cpu.regs[3], m.cpu.rip) == (0x1122 + at, at + 16)


def _hooked(src: str, way: str) -> list:
    """What a device sees of the CPU at each write, ``src`` run ``way``."""
    with translation(way):
        m = machine_with(src)
        seen: list = []
        m.mem.write_hooks[0x20] = lambda hpa, size, value: seen.append(
            (value, m.cpu.cycles, m.cpu.icount, m.cpu.rip, m.cpu.rflags))
        m.run(2_000)
    return seen + [(m.cpu.cycles, m.cpu.icount, m.cpu.rip, m.cpu.rflags, m.cpu.regs, m.console.output)]


@settings(max_examples=25, deadline=None, derandomize=True)
@given(rounds=st.integers(1, 25), pre=st.integers(0, 3), post=st.integers(0, 3), value=st.integers(0, 2**63))
def test_a_device_sees_the_same_cpu_whichever_way_a_block_runs(rounds, pre, post, value):
    # Stores to a device's page in mid-block, in a loop, and output to a port: the device
    # sees the same time, rip (the block's start: no instruction before the block's last
    # sets it) and flags, and the run ends the same. (Registers a device never sees: the
    # whole block keeps them in locals until it ends or calls the CPU.)
    body = "\n".join(["add rax, rbx", "sub rdx, 3", "xor rbx, rax"][:pre])
    tail = "\n".join(["inc rsi", "cmp rsi, rdx", "imul rbx, rbx, 5"][:post])
    src = (f"mov rbx, {value}\nmov rcx, {rounds}\njmp .top\n.top:\n{body}\nmov [0x20008], rcx\n{tail}\n"
           "mov al, cl\nadd al, 0x40\nout 0xe9, al\ndec rcx\njnz .top\nhlt")
    seen = [_hooked(src, way) for way in WAYS]
    assert seen[0] == seen[1] == seen[2]
    assert len(seen[0]) == rounds + 1


@settings(max_examples=25, deadline=None, derandomize=True)
@given(rounds=st.integers(2, 30), flip=st.integers(1, 29), budget=st.integers(10, 400),
       extra=st.sampled_from(["add rbx, rax", "shl rbx, 1", "mov [0x10000 + 8], rbx", "neg rbx"]))
def test_code_that_rewrites_itself_runs_the_same_whichever_way_its_blocks_run(rounds, flip, budget, extra):
    # At round ``flip`` the loop copies .alt over .patch (its own block, or a block
    # already hot): from the next round on, the new instruction runs.
    src = f"""
    mov rcx, {rounds}
    xor rax, rax
    jmp .top
.top:
.patch:
    add rax, 1
    {extra}
    cmp rcx, {flip}
    jne .skip
    mov rbx, [.alt]
    mov [.patch], rbx
    mov rbx, [.alt + 8]
    mov [.patch + 8], rbx
.skip:
    dec rcx
    jnz .top
    hlt
.alt:
    add rax, 100
"""
    runs = []
    for way in WAYS:
        with translation(way):
            m = machine_with(src)
            m.run(budget)
        runs.append((m.cpu.regs, m.cpu.rip, m.cpu.rflags, m.cpu.icount, m.cpu.cycles, m.mem.read(0x10000, 64)))
    assert runs[0] == runs[1] == runs[2]
