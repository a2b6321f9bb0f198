"""Small helpers for tests that run hand-written code on the bare machine."""

from __future__ import annotations

from lab.hw.machine import Machine
from lab.isa.assembler import assemble

CODE_BASE = 0x1000
STACK_TOP = 0x9000
DATA_BASE = 0x10000


def machine_with(source: str, *, mem_mib: int = 4, org: int = CODE_BASE) -> Machine:
    """A machine at ring 0, paging off, with ``source`` loaded at ``org`` and rip there."""
    image = assemble(f".org {org:#x}\n_start:\n" + source, "test.s")
    m = Machine(mem_mib=mem_mib)
    for sec in image.sections:
        if sec.data:
            m.mem.write(sec.base, bytes(sec.data))
    m.images["test"] = image
    m.cpu.rip = image.entry
    m.cpu.regs[4] = STACK_TOP
    return m


def run_to_halt(m: Machine, limit: int = 100_000) -> Machine:
    """Run until the code executes ``hlt`` with interrupts off (the machine stops)."""
    m.run(limit)
    return m


def regs(m: Machine) -> dict[str, int]:
    from lab.isa.registers import GPR64
    return {n: m.cpu.regs[i] for i, n in enumerate(GPR64)}
