"""``xenlab run``: run a machine without a screen and report what happened."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..paths import display
from ..trace import FORMAT_VERSION
from .build import DEFAULT_PROGRAM, native_machine
from .eventspec import EventSpec
from .summary import summarize

DEFAULT_LIMIT = 200_000_000


@dataclass
class RunResult:
    target: str
    instructions: int
    cycles: int
    idle_cycles: int
    stopped: str | None
    until_hit: dict | None
    console: str
    summary: dict[str, Any] = field(default_factory=dict)

    def status_line(self) -> str:
        state = f"stopped: {self.stopped}" if self.stopped else "still running"
        hit = ""
        if self.until_hit is not None:
            hit = f"; reached {self.until_hit['kind']} event #{self.until_hit['seq']}"
        return (f"[{state} after {self.instructions:,} instructions, {self.cycles:,} cycles"
                f" ({self.idle_cycles:,} idle){hit}]")

    def to_json(self, summary: bool = True) -> dict[str, Any]:
        out = {"target": self.target, "instructions": self.instructions, "cycles": self.cycles,
               "idle_cycles": self.idle_cycles, "stopped": self.stopped, "until": self.until_hit,
               "console": self.console}
        if summary:
            out["summary"] = self.summary
        return out


def run_headless(target: str, *, steps: int | None = None, until: EventSpec | None = None,
                 program: str | None = None, arg: int = 0, trace_path: str | None = None,
                 costs: str | None = None) -> RunResult:
    path = Path(target)
    if path.suffix != ".s":
        raise UserError(f"{display(path)}: expected a kernel source (.s)")
    machine = native_machine(path, Path(program) if program else DEFAULT_PROGRAM, arg=arg, costs=costs)
    limit = steps if steps is not None else DEFAULT_LIMIT
    hit = None
    if until is not None:
        ev = machine.run_until(until.matches, max_insns=limit)
        hit = ev.to_dict() if ev is not None else None
    else:
        machine.run(limit)
    machine.console.flush()
    if trace_path:
        try:
            with open(trace_path, "w") as fp:
                machine.trace.write_jsonl(fp, {"target": display(path), "lab_format": FORMAT_VERSION})
        except OSError as e:
            raise UserError(f"{trace_path}: cannot write: {e.strerror}") from None
    cpu = machine.cpu
    return RunResult(display(path), cpu.icount, cpu.cycles, machine.idle_cycles, cpu.stopped, hit,
                     machine.console.output, summarize(machine.trace.events))
