"""The CPU's fast paths do exactly what the slow ones do: chained blocks, blocks that loop by
themselves, cold blocks run as pieces and rep string instructions stop, fault and write where
single steps would."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from machine_helpers import machine_with
from translation_modes import translation

pytestmark = pytest.mark.machine


@pytest.fixture(autouse=True, params=["hot", "cold", "warming"])
def _translation(request):
    """Each test with blocks compiled whole from the start, run as their one-instruction
    pieces throughout, and turning hot after two runs."""
    with translation(request.param):
        yield


def _stepped(src: str, n: int):
    m = machine_with(src)
    for _ in range(n):
        if m.cpu.stopped:
            break
        m.step()
    return m


def test_a_loop_that_rewrites_its_own_code_runs_the_new_code_from_the_next_round():
    # Each round copies the instruction at .alt over the one at .patch: the first
    # round adds 1, every later one adds 100. The loop's own page is written
    # through the slow path, so the block must leave its loop and be translated again.
    src = """
    mov rcx, 6
    xor rax, rax
    jmp .top
.top:
.patch:
    add rax, 1
    mov rbx, [.alt]
    mov [.patch], rbx
    mov rbx, [.alt + 8]
    mov [.patch + 8], rbx
    dec rcx
    jnz .top
    hlt
.alt:
    add rax, 100
"""
    ran = machine_with(src)
    ran.run(10_000)
    assert ran.cpu.regs[0] == 1 + 5 * 100
    stepped = _stepped(src, 10_000)
    assert stepped.cpu.regs == ran.cpu.regs and stepped.cpu.icount == ran.cpu.icount
    assert ran.code.invalidations >= 1


def _hooked(src: str):
    m = machine_with(src)
    writes: list[int] = []

    def device_write(hpa: int, size: int, value: int) -> None:
        writes.append(value)
        if value in (1, 50):
            m.cpu.yield_now = True       # as a breakpoint or a device asking to reschedule does
    m.mem.write_hooks[0x20] = device_write
    return m, writes


def test_a_device_write_stops_a_chain_at_the_end_of_its_block():
    # The first pass translates the three blocks; on the second, the device's
    # write must end the run before the chain goes on to .b.
    m, writes = _hooked("""
    mov rdx, 2
.again:
    mov [0x20000], rdx
    jmp .b
.b:
    add rbx, 1
    jmp .c
.c:
    dec rdx
    jnz .again
    hlt
""")
    m.run(1_000)
    assert writes == [2, 1]
    assert m.cpu.icount == 1 + 2 + 2 + 2 + 2 and m.cpu.regs[3] == 1      # .b ran once
    m.run(1_000)
    assert m.cpu.regs[3] == 2 and m.cpu.stopped


def test_a_device_write_stops_a_block_that_loops_by_itself_after_that_round():
    m, writes = _hooked("""
    mov rcx, 50
    jmp .top
.top:
    mov [0x20000], rcx
    add rax, 1
    dec rcx
    jnz .top
    hlt
""")
    m.run(1_000)
    assert writes == [50]
    assert m.cpu.icount == 2 + 4 and m.cpu.regs[0] == 1


def test_without_devices_chained_blocks_run_to_the_end_in_one_run():
    m = machine_with("""
    mov rax, 7
    mov [0x30000], rax
    jmp .b
.b:
    mov rbx, 2
    jmp .c
.c:
    mov rcx, 3
    hlt
""")
    m.run(1_000)
    assert m.cpu.regs[3] == 2 and m.cpu.regs[1] == 3


# rep movs/stos does the elements that lie in pages its caches hold at once; the
# result must be exactly that of the same instruction one element at a time.
@settings(max_examples=40, deadline=None, derandomize=True)
@given(store=st.booleans(), size=st.sampled_from([1, 8]), count=st.integers(0, 700),
       src=st.integers(0x10000, 0x12ff0), gap=st.integers(-40, 40), far=st.booleans(),
       warm=st.booleans())
def test_rep_string_ops_match_one_element_at_a_time(store, size, count, src, gap, far, warm):
    dst = src + 0x1800 if far else max(0x10000, src + gap)
    op = {1: "b", 2: "w", 4: "d", 8: "q"}[size]
    name = ("stos" if store else "movs") + op
    pattern = "\n".join(f"mov qword [{0x10000 + k * 8:#x}], {(k * 0x9E3779B9) & 0x7FFFFFFF:#x}"
                        for k in range(0, 0x4000 // 8, 97))
    # ``warm`` touches both pages first, so the fast caches hold them from the start.
    touch = f"mov r8, [{src:#x}]\nmov [{dst:#x}], r8\n" if warm else ""
    setup = f"{pattern}\n{touch}mov rsi, {src:#x}\nmov rdi, {dst:#x}\nmov rax, 0x1122334455667788\n"
    rep = machine_with(f"{setup}mov rcx, {count}\nrep {name}\nhlt")
    one = machine_with(f"{setup}mov rcx, {count}\ntest rcx, rcx\njz .done\n.next:\n{name}\ndec rcx\njnz .next\n"
                       ".done:\nhlt")
    rep.run(100_000)
    one.run(100_000)
    assert rep.cpu.stopped and one.cpu.stopped
    assert [rep.cpu.regs[k] for k in (1, 6, 7)] == [one.cpu.regs[k] for k in (1, 6, 7)]
    assert rep.mem.read(0x10000, 0x5000) == one.mem.read(0x10000, 0x5000)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(until=st.integers(40, 400))
def test_a_block_that_loops_by_itself_stops_at_the_cycle_budget_where_single_steps_would(until):
    src = "mov rcx, 100\njmp .top\n.top:\nadd rax, rcx\nxor rbx, rax\nshl rbx, 3\ndec rcx\njnz .top\nhlt"
    m = machine_with(src)
    m.cpu.run(1_000_000, until)
    loop = next(b for b in m.code.blocks.values() if b.n == 5)
    most = max(m.code.cost_of(i) for i in loop.insns)
    assert loop.cost > most
    assert until <= m.cpu.cycles < until + most         # never a whole round past the budget
    stepped = _stepped(src, m.cpu.icount)
    assert stepped.cpu.regs == m.cpu.regs and stepped.cpu.cycles == m.cpu.cycles


def test_a_block_that_loops_by_itself_charges_its_rounds_before_a_device_sees_the_time():
    # Rounds that hit the write cache count their charges in the block; the round whose
    # store leaves the cached page reaches a device that reads the time: it must see
    # every round charged, as the dispatcher charges a block: whole, when it starts
    # (three instructions of one cycle each after the store that single steps have not).
    def run(stepping: bool) -> tuple[list[tuple[int, int]], object]:
        m = machine_with("""
    mov rdi, 0x1FF80
    mov rcx, 40
    jmp .top
.top:
    mov [rdi], rcx
    add rdi, 8
    dec rcx
    jnz .top
    hlt
""")
        seen: list[tuple[int, int]] = []
        m.mem.write_hooks[0x20] = lambda hpa, size, value: seen.append((m.cpu.cycles, m.cpu.icount))
        if stepping:
            for _ in range(1_000):
                m.step()
        else:
            m.run(1_000)
        return seen, m
    ran, m = run(False)
    stepped, s = run(True)
    assert len(ran) == 24 and [(c - 3, i - 3) for c, i in ran] == stepped
    assert (m.cpu.cycles, m.cpu.icount, m.cpu.regs) == (s.cpu.cycles, s.cpu.icount, s.cpu.regs)


def test_a_fault_in_a_later_round_of_a_block_that_loops_by_itself_is_charged_as_stepping():
    # The divisor reaches zero in the fourth round: the fault (no handler: a triple
    # fault stops the CPU) must find the same cycles, instructions and registers.
    src = "mov rcx, 3\njmp .top\n.top:\nmov rax, 100\nxor rdx, rdx\ndiv rcx\nadd rbx, rax\ndec rcx\njmp .top"
    m = machine_with(src)
    m.run(1_000)
    s = _stepped(src, 1_000)
    assert m.cpu.stopped and s.cpu.stopped
    assert (m.cpu.cycles, m.cpu.icount, m.cpu.regs, m.cpu.rip) == (s.cpu.cycles, s.cpu.icount, s.cpu.regs, s.cpu.rip)
    assert m.cpu.regs[3] == 33 + 50 + 100
