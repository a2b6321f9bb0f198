"""The bare machine: memory, one CPU, the platform devices and the trace.

This is the "native" baseline every Xen mode is compared against: a kernel
boots at ring 0 with no hypervisor. Time is simulated cycles; the PIT is the
only source of time-driven events, so the machine runs the CPU up to the
next timer deadline, lets the timer fire, and goes on. When the CPU halts
with interrupts enabled, time jumps to the next deadline (idle time).
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

from ..isa.encoding import Instruction
from ..trace import Event, Trace
from .costs import Costs, load_costs
from .cpu import CodeCache, Cpu
from .devices.board import DebugConsole, IoBus, Pic8259, Pit8254, PowerControl
from .memory import MachineMemory
from .snapshot import Snapshot, keeper_of

FOREVER = 1 << 62


class Machine:
    #: The snapshot keeper is how state is saved, not state.
    NOT_STATE = ("_keeper",)

    def __init__(self, *, mem_mib: int = 64, vendor: str = "intel", cpu_mhz: int = 2000,
                 costs: Costs | None = None, keep_trace: bool = True) -> None:
        self.mem = MachineMemory(mem_mib << 20)
        self.vendor = vendor
        self.cpu_hz = cpu_mhz * 1_000_000
        self.costs = costs or load_costs()
        self.trace = Trace(keep=keep_trace)
        cost_of = self._cost_fn()
        self.code = CodeCache(self.mem, cost_of)
        self.cpu = Cpu(self.mem, None, self.code, vendor=vendor, costs=self.costs.instruction,
                       emit=self._emit)
        self.bus = IoBus(self._emit, lambda: self.cpu.cycles)
        self.cpu.bus = self.bus
        self.pic = Pic8259()
        self.pit = Pit8254(self.cpu_hz, lambda: self.cpu.cycles)
        self.console = DebugConsole(lambda line: self._emit("console", text=line))
        self.bus.attach(range(0x20, 0x22), "pic", self.pic)
        self.bus.attach(range(0x40, 0x44), "pit", self.pit)
        self.bus.attach(range(0xE9, 0xEA), "debugcon", self.console)
        self.bus.attach(range(0x604, 0x606), "acpi-pm", PowerControl(self._power_off))
        self.cpu.irq_source = self.pic
        self.idle_cycles = 0
        self.images: dict[str, Any] = {}
        #: Devices plugged in from outside (a disk, a network card), or None; their state
        #: goes with the machine's snapshots like every other component's.
        self.pc: Any = None

    def _cost_fn(self) -> Callable[[Instruction], int]:
        from ..isa.opcodes import BY_CODE
        table = {code: self.costs.of_mnemonic(info.name) for code, info in BY_CODE.items()}
        return lambda insn: table[insn.op]

    def _emit(self, kind: str, **data: Any) -> Event:
        cpu = self.cpu
        return self.trace.record(cpu.cycles, 0, None, 0, kind, data)

    def vcpu_refs(self) -> list[tuple[str, int | None, int, Cpu]]:
        """The CPUs a learner can focus: (label, domain, vcpu, cpu)."""
        return [("bare metal", None, 0, self.cpu)]

    def images_for(self, dom: int | None) -> dict[str, Any]:
        return self.images

    def console_of(self, dom: int | None) -> str:
        return self.console.output

    # -- running ------------------------------------------------------------
    @property
    def stopped(self) -> str | None:
        return self.cpu.stopped

    def _power_off(self) -> None:
        self.console.flush()
        self.cpu.stop("power off")

    @property
    def powered_off(self) -> bool:
        return self.cpu.stopped == "power off"

    def _tick(self) -> None:
        self.pit.tick(self.cpu.cycles, self.pic.raise_irq)

    def _idle(self) -> bool:
        """Advance time across a halt; False if nothing can ever wake the CPU."""
        nxt = self.pit.next_fire()
        if nxt is None:
            self.cpu.stop("halted with no timer running: nothing can wake the CPU")
            return False
        if nxt > self.cpu.cycles:
            self.idle_cycles += nxt - self.cpu.cycles
            self.cpu.cycles = nxt
        self._tick()
        return True

    def step(self) -> None:
        """One instruction (or one interrupt delivery)."""
        cpu = self.cpu
        if cpu.stopped:
            return
        if cpu.halted and not cpu._interrupt_ready():
            if not self._idle():
                return
        self._tick()
        cpu.step()
        self._tick()

    def run(self, n: int = FOREVER) -> None:
        """Run ``n`` more instructions, or until the machine stops."""
        cpu = self.cpu
        target = cpu.icount + n
        cpu.yield_now = False
        while cpu.icount < target and not cpu.stopped and not cpu.yield_now:
            if cpu.halted and not cpu._interrupt_ready():
                if not self._idle():
                    return
                continue
            nxt = self.pit.next_fire()
            cpu.run(target - cpu.icount, FOREVER if nxt is None else nxt)
            self._tick()

    def run_until(self, predicate: Callable[[Event], bool], max_insns: int = 50_000_000) -> Event | None:
        """Run until an event satisfies ``predicate``; return it (or None)."""
        hit: list[Event] = []

        def watch(ev: Event) -> None:
            if not hit and predicate(ev):
                hit.append(ev)
        self.trace.listeners.append(watch)
        try:
            cpu = self.cpu
            limit = cpu.icount + max_insns
            while not hit and not cpu.stopped and cpu.icount < limit:
                before = (cpu.icount, cpu.cycles)
                self.step()
                if (cpu.icount, cpu.cycles) == before and cpu.halted and not hit:
                    break
        finally:
            self.trace.listeners.remove(watch)
        return hit[0] if hit else None

    # -- state ------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The whole machine (memory, CPU, devices, plugged-in PC devices, trace position)."""
        return keeper_of(self).save(self, self.cpu.icount, self.cpu.cycles, self.trace.seq)

    def restore(self, snap: Snapshot) -> None:
        """Back to ``snap``: the machine then runs on exactly as it did from there."""
        keeper_of(self).load(snap)

    def digest(self) -> str:
        """A hash of the whole machine state (memory, CPU, devices, trace position)."""
        h = hashlib.sha256()
        self.mem.digest_into(h)
        self.cpu.digest_into(h)
        h.update(repr(sorted(self.pic.snapshot().items())).encode())
        h.update(repr(sorted(self.pit.snapshot().items())).encode())
        form = self.console.log.digest_form()     # the text itself below the log's bound
        h.update(form.encode() if isinstance(form, str) else repr(form).encode())
        h.update(repr((self.trace.seq, self.idle_cycles)).encode())
        return h.hexdigest()[:32]
