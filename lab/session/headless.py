"""``xenlab run``: run a machine without a screen and report what happened.

The target is a kernel source (``.s``: the bare machine), a scenario
(``.toml``: a Xen host and its domains) or one or more xl.cfg files (each
becomes a domain on the default host, next to Domain-0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from ..paths import display
from ..trace import FORMAT_VERSION
from ..xen.console import displayable
from .commands import execute
from .eventspec import EventSpec
from .live import open_session
from .recorder import stop_recording
from .summary import summarize
from .targets import build_target
from .xentrace import attach_xentrace

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
    domains: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def status_line(self) -> str:
        state = f"stopped: {self.stopped}" if self.stopped else "still running"
        hit = ""
        if self.until_hit is not None:
            hit = f"; reached {self.until_hit['kind']} event #{self.until_hit['seq']}"
        idle = f" ({self.idle_cycles:,} idle)" if not self.domains else ""
        return f"[{state} after {self.instructions:,} instructions, {self.cycles:,} cycles{idle}{hit}]"

    def to_json(self, summary: bool = True) -> dict[str, Any]:
        out = {"target": self.target, "instructions": self.instructions, "cycles": self.cycles,
               "idle_cycles": self.idle_cycles, "stopped": self.stopped, "until": self.until_hit,
               "console": self.console, "domains": self.domains, "warnings": self.warnings}
        if summary:
            out["summary"] = self.summary
        return out


def console_section(dom) -> str:
    """One domain's console for headless output: a header, then every line prefixed with the
    domain and its control characters shown, never sent, so nothing a guest prints can pass
    for another domain's console, for a header, or move the terminal's cursor."""
    lines = dom.console_output.rstrip().split("\n")
    body = "".join(f"d{dom.domid}| {displayable(line)}\n" for line in lines)
    return f"--- {dom.name} (d{dom.domid}, {dom.mode}) ---\n{body}"


def _write_trace(trace, path: str, target: str) -> None:
    try:
        with open(path, "w") as fp:
            trace.write_jsonl(fp, {"target": target, "lab_format": FORMAT_VERSION})
    except OSError as e:
        raise UserError(f"{path}: cannot write: {e.strerror}") from None


def run_headless(target: str | list[str], *, steps: int | None = None, until: EventSpec | None = None,
                 program: str | None = None, arg: int = 0, trace_path: str | None = None,
                 costs: str | None = None, xentrace_path: str | None = None,
                 record: str | None = None) -> RunResult:
    targets = [target] if isinstance(target, str) else list(target)
    limit = steps if steps is not None else DEFAULT_LIMIT
    hit = None
    session = None
    if record is not None:
        # Driven through the command language, so the recording holds the run as its one input.
        warnings: list[str] = []
        session = open_session(targets, program, arg, costs, record=record, quiet_warnings=warnings)
        machine = session.machine
        kind = "xen" if isinstance(getattr(machine, "domains", None), dict) else "native"
    else:
        kind, machine, xl, warnings = build_target(targets, program, arg, costs)
    if until is not None:
        until = until.bind(machine)          # run --until KIND@DOMAIN: the domain is known now
    writer = None
    if xentrace_path:
        writer = attach_xentrace(machine, xentrace_path)
    try:
        if session is not None:
            if until is not None:
                session.note_input("command", f"until {until}")      # what the until command does
                ev = session.until(until)
                session.input_applied()
                hit = ev.to_dict() if ev is not None else None
            else:
                execute(session, f"run {limit}")
        elif until is not None:
            ev = machine.run_until(until.matches, max_insns=limit)
            hit = ev.to_dict() if ev is not None else None
        else:
            machine.run(limit)
    finally:
        if session is not None:
            stop_recording(session)
            session.stop_watching()
        if writer is not None:
            writer.close()
            writer.fp.close()
    shown = ", ".join(display(t) for t in targets)
    if trace_path:
        _write_trace(machine.trace, trace_path, shown)
    if kind == "native":
        machine.console.flush()
        cpu = machine.cpu
        return RunResult(shown, cpu.icount, cpu.cycles, machine.idle_cycles, cpu.stopped, hit,
                         machine.console.output, summarize(machine.trace.iter_all()))
    host = machine
    domains = []
    console = []
    for d in sorted(host.domains.values(), key=lambda d: d.domid):
        domains.append({"domid": d.domid, "name": d.name, "mode": d.mode, "state": d.state,
                        "reason": d.crash_reason or d.shutdown_reason,
                        "instructions": sum(v.cpu.icount for v in d.vcpus if v.cpu is not None)})
        if d.console_output:
            console.append(console_section(d))
    alive = [d["name"] for d in domains if d["state"] == "running" and d["domid"] != 0]
    stopped = None if alive else "every guest has stopped"
    return RunResult(shown, host.instructions, max(host.clock), 0, stopped, hit, "".join(console),
                     summarize(host.trace.iter_all()), domains, warnings)
