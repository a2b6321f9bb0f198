"""Compiled blocks are shared by instruction bytes, at any address, in the process and on disk."""

from __future__ import annotations

import pytest

from lab.hw import blockcache, translate
from lab.hw.blockcache import BLOCKS, BlockCache
from machine_helpers import machine_with, run_to_halt
from translation_modes import translation

PROGRAM = "mov rax, 5\nmov rbx, 7\nadd rax, rbx\nimul rax, rax\nhlt"


def _no_compiling(*args, **kwargs):
    raise AssertionError("a cached block was compiled again")


@pytest.fixture(params=["hot", "cold"])
def way(request):
    """Blocks compiled whole from their first run, or run as their pieces (never hot)."""
    with translation(request.param):
        yield request.param


def test_a_second_machine_reuses_the_compiled_blocks(monkeypatch, way):
    run_to_halt(machine_with(PROGRAM))
    monkeypatch.setattr(translate, "compile", _no_compiling, raising=False)
    m = run_to_halt(machine_with(PROGRAM))
    assert m.cpu.regs[0] == 144 and m.code.translations > 0


def test_compiled_code_read_back_from_the_cache_runs_as_compiled(monkeypatch):
    # Another process: blocks made in this one are forgotten, the compiled code is not.
    monkeypatch.setattr(translate, "HOT_AFTER", 0)
    run_to_halt(machine_with(PROGRAM))
    monkeypatch.setattr(translate, "_MADE", {})
    monkeypatch.setattr(translate, "compile", _no_compiling, raising=False)
    hits = BLOCKS.hits
    m = run_to_halt(machine_with(PROGRAM))
    assert m.cpu.regs[0] == 144 and BLOCKS.hits > hits


# Relative jumps, a call and its return, a rip-relative load and lea, a loop going
# round by itself and a system instruction (its next rip is an argument): each names
# addresses derived from the block's own.
RELOCATABLE = """\
    mov eax, 0
    cpuid
    mov rcx, 3
    xor rax, rax
.top:
    add rax, [rip + .data]
    dec rcx
    jnz .top
    call .sub
    lea rsi, [rip + .data]
    jmp .end
.sub:
    mov rbx, [rsp]
    ret
.end:
    pushfq
    pop rdx
    hlt
.data:
    .quad 7
"""


def test_the_same_bytes_at_another_address_share_one_compiled_block_and_run_there(monkeypatch, way):
    a = run_to_halt(machine_with(RELOCATABLE, org=0x1000))
    monkeypatch.setattr(translate, "compile", _no_compiling, raising=False)
    b = run_to_halt(machine_with(RELOCATABLE, org=0x5000))
    delta = 0x4000
    assert a.cpu.stopped and b.cpu.stopped and a.cpu.icount == b.cpu.icount
    assert b.cpu.regs[3] == a.cpu.regs[3] + delta           # the call's return address
    assert b.cpu.regs[6] == a.cpu.regs[6] + delta           # the rip-relative lea
    assert b.cpu.rip == a.cpu.rip + delta
    assert (b.cpu.regs[0], b.cpu.regs[2]) == (a.cpu.regs[0], a.cpu.regs[2])


def test_other_bytes_at_the_same_address_are_other_blocks():
    a = run_to_halt(machine_with(PROGRAM))
    b = run_to_halt(machine_with(PROGRAM.replace("mov rbx, 7", "mov rbx, 9")))
    assert a.cpu.regs[0] == 144 and b.cpu.regs[0] == 196


def test_code_rewritten_under_the_machine_runs_as_written():
    # As a restored snapshot does: the same address, new bytes, a cache already warm.
    m = machine_with(PROGRAM)
    run_to_halt(m)
    other = machine_with(PROGRAM.replace("add rax, rbx", "sub rax, rbx"))
    m.mem.write(other.cpu.rip, other.mem.read(other.cpu.rip, 5 * 16))
    m.code.invalidate_frame(other.cpu.rip >> 12)
    m.cpu.reset()
    m.cpu.rip = other.cpu.rip
    run_to_halt(m)
    assert m.cpu.regs[0] == 4


def test_blocks_survive_the_process_on_disk(tmp_path):
    first = BlockCache(tmp_path)
    code = compile("def block(cpu):\n    return A0\n", "<translated block>", "exec")
    key = first.key(b"\x01" * 16)
    assert first.get(key) is None
    first.put(key, (code, (0x10,)))
    first.save()
    second = BlockCache(tmp_path)
    got, offsets = second.get(key)
    ns: dict = {"A0": 0x1000 + offsets[0]}
    exec(got, ns)
    assert ns["block"](None) == 0x1010 and second.hits == 1


def test_a_new_translator_reads_none_of_the_old_blocks(tmp_path, monkeypatch):
    first = BlockCache(tmp_path)
    key = first.key(b"\x00" * 16)
    first.put(key, (compile("x = 1", "<translated block>", "exec"), ()))
    first.save()
    monkeypatch.setattr(blockcache, "translator_version", lambda: "another")
    assert BlockCache(tmp_path).get(key) is None


@pytest.mark.parametrize("damage", [b"", b"not marshal at all", b"\xe3\x00"])
def test_a_damaged_cache_file_means_compiling_afresh(tmp_path, damage):
    cache = BlockCache(tmp_path)
    cache.path().parent.mkdir(parents=True)
    cache.path().write_bytes(damage)
    assert cache.get(cache.key(b"\x00" * 16)) is None


def test_generated_code_names_no_address_of_its_own():
    # Every block of the program, generated at two addresses: the same text (the
    # addresses are the namespace's A0, A1...), different values for the names.
    a, b = machine_with(RELOCATABLE, org=0x1000), machine_with(RELOCATABLE, org=0x5000)
    size = len(RELOCATABLE.splitlines()) * 16
    off = 0
    while off < size:
        fa = a.mem.frame(0x1000 >> 12)
        insns, fault = translate.fetch_run(fa, 0x1000 + off, False)
        if fault is not None:
            break
        there, _ = translate.fetch_run(b.mem.frame(0x5000 >> 12), 0x5000 + off, False)
        assert there == insns
        ga = translate._Gen(insns, 0x1000 + off, lambda _: 1)
        gb = translate._Gen(there, 0x5000 + off, lambda _: 1)
        assert ga.build() == gb.build()
        assert list(ga.offsets) == list(gb.offsets)
        off += len(insns) * 16
    assert off > 10 * 16
