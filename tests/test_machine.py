"""The whole machine: the workload's checksum, determinism, snapshots, stepping vs running."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from lab.session.build import native_machine
from machine_helpers import machine_with
from translation_modes import translation

pytestmark = pytest.mark.machine       # every test here boots a whole machine

M = 2**64 - 1


def _checksum_before_disk(rounds: int) -> int:
    total = 64                         # 64 getpid calls, pid 1
    x = 0x9E3779B97F4A7C15
    heap = [0] * (32 * 512)
    for _ in range(rounds):
        for i in range(len(heap)):
            x ^= (x << 13) & M
            x ^= x >> 7
            x ^= (x << 17) & M
            heap[i] = x
        h = 0xCBF29CE484222325
        for v in heap:
            h = ((h ^ v) * 0x100000001B3) & M
        total = (total + h) & M
    return total


def workload_sector(rounds: int = 1) -> list[int]:
    """The 64 qwords the workload writes to sector 0: xorshift64 seeded from its checksum."""
    x = _checksum_before_disk(rounds) ^ 0x5851F42D4C957F2D
    out = []
    for _ in range(64):
        x ^= (x << 13) & M
        x ^= x >> 7
        x ^= (x << 17) & M
        out.append(x)
    return out


def expected_checksum(rounds: int = 1) -> int:
    """The workload's checksum computed independently, in Python."""
    total = _checksum_before_disk(rounds)
    # the disk step folds the sector as read back (or, without a disk, as
    # written: the same bytes)
    h = 0xCBF29CE484222325
    for v in workload_sector(rounds):
        h = ((h ^ v) * 0x100000001B3) & M
    return (total + h) & M


def test_workload_checksum_on_the_native_kernel():
    m = native_machine()
    m.run()
    out = m.console.output
    assert m.cpu.stopped == "power off"
    assert f"workload: checksum {expected_checksum():#018x}" in out
    assert "program exited with code 0; syscalls 76, demand faults 32" in out
    traps = [e for e in m.trace.iter_all() if e.kind == "trap"]
    assert len(traps) == 32 and all(e.data["mnemonic"] == "#PF" and e.data["cpl"] == 3 for e in traps)


def test_workload_with_more_rounds():
    m = native_machine(arg=2)
    m.run()
    assert f"{expected_checksum(2):#018x}" in m.console.output


def test_two_runs_give_the_same_digest_and_trace():
    a = native_machine()
    b = native_machine()
    a.run()
    b.run()
    assert a.digest() == b.digest()
    assert [e.to_json() for e in a.trace.iter_all()] == [e.to_json() for e in b.trace.iter_all()]


def test_snapshot_run_restore_run_gives_the_same_digest():
    m = native_machine()
    m.run(50_000)
    snap = m.snapshot()
    m.run(100_000)
    first = (m.digest(), len(m.trace), m.cpu.icount)
    m.restore(snap)
    m.run(100_000)
    assert (m.digest(), len(m.trace), m.cpu.icount) == first
    m.run()
    assert f"{expected_checksum():#018x}" in m.console.output


def test_stepping_matches_running_on_the_workload():
    a = native_machine()
    b = native_machine()
    a.run(20_000)
    while b.cpu.icount < 20_000:      # a step that faults delivers the fault and executes nothing
        b.step()
    assert a.cpu.icount == b.cpu.icount == 20_000
    assert a.digest() == b.digest()


# Random straight-line programs with loads, stores and forward branches: running
# them as translated blocks and single-stepping them must end in the same state.
REGS = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9"]
BYTE_REGS = {"rax": "al", "rbx": "bl", "rcx": "cl", "rdx": "dl", "rsi": "sil", "rdi": "dil", "r8": "r8b", "r9": "r9b"}
ops = st.one_of(
    st.tuples(st.sampled_from(["add", "sub", "and", "or", "xor", "cmp", "test", "adc", "sbb", "mov"]),
              st.sampled_from(REGS), st.sampled_from(REGS)).map(lambda t: f"{t[0]} {t[1]}, {t[2]}"),
    st.tuples(st.sampled_from(["add", "sub", "xor", "cmp", "mov", "and"]), st.sampled_from(REGS),
              st.integers(-2**31, 2**31 - 1)).map(lambda t: f"{t[0]} {t[1]}, {t[2]}"),
    st.tuples(st.sampled_from(["inc", "dec", "neg", "not"]), st.sampled_from(REGS)).map(lambda t: f"{t[0]} {t[1]}"),
    st.tuples(st.sampled_from(["shl", "shr", "sar", "rol", "ror"]), st.sampled_from(REGS),
              st.integers(0, 63)).map(lambda t: f"{t[0]} {t[1]}, {t[2]}"),
    st.tuples(st.sampled_from(REGS), st.integers(0, 255)).map(lambda t: f"mov [0x10000 + {t[1] * 8}], {t[0]}"),
    st.tuples(st.sampled_from(REGS), st.integers(0, 255)).map(lambda t: f"mov {t[0]}, [0x10000 + {t[1] * 8}]"),
    st.tuples(st.sampled_from(REGS), st.integers(0, 255)).map(lambda t: f"add [0x10000 + {t[1] * 8}], {t[0]}"),
    st.tuples(st.sampled_from(["e", "ne", "b", "a", "l", "g", "s", "o", "p"]),
              st.integers(1, 3)).map(lambda t: f"j{t[0]} .f{t[1]}"),
    st.tuples(st.sampled_from(["e", "b", "l", "s"]), st.sampled_from(list(BYTE_REGS))).map(
        lambda t: f"set{t[0]} {BYTE_REGS[t[1]]}"),
    st.just("pushfq\npop r10"), st.just("push rax\npop r11"),
    # imul in its three forms; cpuid, a CPU method that writes registers in mid-block
    st.tuples(st.sampled_from(REGS), st.sampled_from(REGS)).map(lambda t: f"imul {t[0]}, {t[1]}"),
    st.tuples(st.sampled_from(REGS), st.sampled_from(REGS), st.integers(-2**31, 2**31 - 1)).map(
        lambda t: f"imul {t[0]}, {t[1]}, {t[2]}"),
    st.sampled_from(REGS).map(lambda r: f"imul {r}"),
    st.just("mov eax, 0\ncpuid"),
    # a port: output to the debug console, and reading it back
    st.integers(0x20, 0x7E).map(lambda c: f"mov al, {c}\nout 0xe9, al\nin al, 0xe9"),
    # a load or a store beyond memory faults in mid-block: the registers and flags
    # written before it must hold
    st.just("mov rax, [0x7ff000]"),
    st.just("mov [0x7ff000], rbx"),
)


def _run_and_step(src: str, budget: int) -> list:
    """The same program run ``budget`` instructions as whole compiled blocks, as cold
    blocks (one-instruction pieces), as blocks turning hot after two runs, and single-stepped."""
    machines = []
    for mode in ("hot", "cold", "warming"):
        m = machine_with(src)
        with translation(mode):
            m.run(budget)
        machines.append(m)
    b = machine_with(src)
    with translation("warming"):
        for _ in range(budget):
            if b.cpu.stopped:
                break
            b.step()
    return machines + [b]


def _assert_same_state(machines: list) -> None:
    """Registers, flags, control state and the data pages agree (the TLB may differ)."""
    a = machines[0]
    sa = a.cpu.snapshot()
    sa.pop("tlb")
    for b in machines[1:]:
        sb = b.cpu.snapshot()
        sb.pop("tlb")
        assert sa == sb
        assert a.mem.read(0x10000, 2048) == b.mem.read(0x10000, 2048)


def _program(body: list[str], seeds: list[int]) -> str:
    init = "\n".join(f"mov {r}, {v}" for r, v in zip(REGS, seeds))
    lines = []
    for k, op in enumerate(body):
        lines.append(op)
        if k % 4 == 3:
            n = (k // 4) % 3 + 1
            lines.append(f".f{n}:")
    lines += [".f1:", ".f2:", ".f3:", "hlt"]
    # labels must be unique: number the forward labels per program
    out, seen = [], {}
    for ln in lines:
        if ln.startswith(".f") and ln.endswith(":"):
            seen[ln] = seen.get(ln, 0) + 1
            out.append(f"{ln[:-1]}_{seen[ln]}:")
        else:
            out.append(ln)
    # jumps go to the next definition of their label
    final, count = [], {}
    for ln in out:
        if ln.startswith("j") and " .f" in ln:
            name = ln.split()[-1]
            final.append(f"{ln}_{count.get(name + ':', 0) + 1}")
        else:
            if ln.startswith(".f"):
                base = ln.split("_")[0] + ":"
                count[base] = count.get(base, 0) + 1
            final.append(ln)
    return init + "\n" + "\n".join(final)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(body=st.lists(ops, min_size=1, max_size=40),
       seeds=st.lists(st.integers(0, M), min_size=len(REGS), max_size=len(REGS)))
def test_translated_blocks_and_single_stepping_agree(body, seeds):
    src = _program(body, seeds)
    machines = _run_and_step(src, 10_000)
    _assert_same_state(machines)
    assert len({m.digest() for m in machines}) == 1
    assert len({m.console.output for m in machines}) == 1


straight_ops = ops.filter(lambda op: not op.startswith("j"))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(body=st.lists(straight_ops, min_size=1, max_size=10), rounds=st.integers(1, 40),
       seeds=st.lists(st.integers(0, M), min_size=len(REGS), max_size=len(REGS)),
       budget=st.integers(20, 2_000))
def test_blocks_that_loop_by_themselves_agree_with_single_steps(body, rounds, seeds, budget):
    # A block that ends by jumping back to its start goes round inside its function:
    # the same instructions, flags, memory and stopping point as stepping, whatever
    # the budget it is given.
    init = "\n".join(f"mov {r}, {v}" for r, v in zip(REGS, seeds))
    # r14 walks through memory a round at a time: from the eighth round on, the
    # round's first instruction faults (past the machine's 4 MiB).
    src = (f"{init}\nmov r12, {rounds}\nmov r14, 0x10000\n.top:\nmov r13, [r14]\n" + "\n".join(body)
           + "\nadd r14, 0x80000\ndec r12\njnz .top\nhlt")
    _assert_same_state(_run_and_step(src, budget))


# What a block that loops by itself may hold: no CPU method, no fault of its own.
loop_ops = straight_ops.filter(lambda op: "cpuid" not in op and "pushfq" not in op and "0x7ff000" not in op
                               and "0xe9" not in op)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(body=st.lists(loop_ops, min_size=1, max_size=10), rounds=st.integers(1, 40),
       seeds=st.lists(st.integers(0, M), min_size=len(REGS), max_size=len(REGS)),
       budget=st.integers(20, 2_000))
def test_rounds_that_stay_in_cached_pages_agree_with_single_steps(body, rounds, seeds, budget):
    # As above, but r14 walks through the last page of memory in small steps: after the
    # first, rounds go on inside the block (their flags committed only where something
    # could look at them) until the seventeenth, whose first instruction faults past
    # the end of memory with the previous round's flags pending.
    init = "\n".join(f"mov {r}, {v}" for r, v in zip(REGS, seeds))
    src = (f"{init}\nmov r12, {rounds}\nmov r14, 0x3FFC00\n.top:\nmov r13, [r14]\n" + "\n".join(body)
           + "\nadd r14, 0x40\ndec r12\njnz .top\nhlt")
    _assert_same_state(_run_and_step(src, budget))


@pytest.mark.parametrize("src", [
    "mov eax, 0\ncpuid\nadd rbx, 1\nmov rsi, rax\nhlt",          # a CPU method writes registers mid-block
    "mov rax, 3\nmov rbx, 4\nimul rax, rbx\nmov rcx, [0x7ff000]\nhlt",   # a fault after register writes
    "mov rax, -3\nimul rax, rax, -7\nmov rdx, 5\nimul rdx\nhlt",
])
def test_registers_held_in_locals_reach_the_cpu(src):
    machines = _run_and_step(src, 100)
    assert all((m.cpu.regs, m.cpu.stopped) == (machines[0].cpu.regs, machines[0].cpu.stopped) for m in machines)
