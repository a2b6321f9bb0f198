"""Trace events: the one stream of truth about what the machine did.

Every observable action of the simulated machine is an :class:`Event`. Panes,
statistics, lesson checks and recordings read events; none of them reaches
into the simulator. The JSON Lines form is a public format documented in
``docs/trace-format.md``; bump :data:`FORMAT_VERSION` on any incompatible
change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

FORMAT_VERSION = 1


@dataclass(frozen=True)
class KindInfo:
    """What one event kind carries and where it comes from in Xen."""
    name: str
    fields: tuple[str, ...]
    xentrace: str | None        # xentrace class (public/trace.h), if one exists
    doc: str


_KINDS = [
    KindInfo("boot", ("mode", "entry", "message"), "GEN", "a machine or domain starts executing"),
    KindInfo("hypercall", ("name", "nr", "args", "ret", "errno", "rip", "caller", "cost", "detail"), "PV",
             "a hypercall, with its decoded arguments and result (errno name when negative); rip is the "
             "trapping instruction, caller the instruction that called into the hypercall page"),
    KindInfo("vmexit", ("reason", "nr", "rip", "qualification", "info", "cost"), "HVM",
             "a VM exit, by VMX reason name and number (SVM exit code on an AMD host)"),
    KindInfo("vmentry", ("rip",), "HVM", "the vCPU re-enters non-root mode"),
    KindInfo("trap", ("vector", "mnemonic", "error_code", "cr2", "rip", "cpl", "handler", "reason"), "PV",
             "an exception or interrupt delivered (or bounced by Xen) to a handler"),
    KindInfo("syscall", ("nr", "rip", "via"), "PV", "a system call enters the kernel (or Xen, for PV)"),
    KindInfo("sysret", ("rip",), "PV", "return from a system call to user mode"),
    KindInfo("ring", ("from_cpl", "to_cpl", "root", "why"), None,
             "the CPU changes privilege level or root/non-root operation"),
    KindInfo("ioport", ("port", "size", "dir", "value", "device"), "HVM",
             "an I/O port access (dir 'in' or 'out') and the device that claimed it"),
    KindInfo("mmio", ("addr", "size", "dir", "value", "device"), "HVM", "a memory-mapped I/O access"),
    KindInfo("pagetable", ("op", "addr", "value", "level", "result", "message"), "MEM",
             "a page-table update, validation (or its failure), shadow sync or EPT violation"),
    KindInfo("tlb", ("op", "addr", "entries"), None, "a TLB flush or invalidation"),
    KindInfo("interrupt", ("vector", "source"), "HVM", "an interrupt is raised by a device or timer"),
    KindInfo("evtchn", ("op", "port", "remote_dom", "remote_port", "result"), None, "an event-channel operation"),
    KindInfo("grant", ("op", "ref", "granter", "frame", "flags", "status"), "MEM", "a grant-table operation"),
    KindInfo("xenstore", ("op", "path", "value", "result"), None, "a xenstore request and reply"),
    KindInfo("ring_io", ("ring", "op", "req_prod", "req_cons", "rsp_prod", "rsp_cons", "notify"), None,
             "a PV shared-ring request or response"),
    KindInfo("ioreq", ("port", "size", "dir", "value", "state"), "HVM", "an ioreq to and from the device model"),
    KindInfo("sched", ("op", "from_dom", "from_vcpu", "to_dom", "to_vcpu", "reason"), "SCHED",
             "the scheduler switches, blocks or wakes a vCPU"),
    KindInfo("domain", ("op", "name", "state", "reason"), "DOM0OP", "a domain is created, paused, crashed, destroyed"),
    KindInfo("console", ("text",), None, "console output from a guest, the kernel or Xen"),
    KindInfo("msr", ("dir", "msr", "value"), "HVM", "an MSR read or write"),
    KindInfo("halt", ("reason",), None, "the CPU stops: hlt with interrupts off, a triple fault, or shutdown"),
]

KINDS: dict[str, KindInfo] = {k.name: k for k in _KINDS}
#: Which field names an event of each kind (``hypercall:mmu_update`` matches ``name``):
#: what event patterns and lesson checks compare a NAME against.
NAME_FIELD = {"hypercall": "name", "vmexit": "reason", "trap": "mnemonic", "domain": "op",
              "pagetable": "op", "tlb": "op", "evtchn": "op", "grant": "op", "xenstore": "op",
              "ring_io": "op", "sched": "op", "halt": "reason", "ioport": "port", "mmio": "addr",
              "ioreq": "port", "msr": "msr", "syscall": "nr", "interrupt": "vector", "console": "text",
              "ring": "to_cpl", "boot": "mode"}
BASE_FIELDS = ("seq", "cycle", "pcpu", "dom", "vcpu", "kind")


@dataclass(slots=True)
class Event:
    seq: int
    cycle: int
    pcpu: int
    dom: int | None      # None on a bare-metal machine: there are no domains
    vcpu: int
    kind: str
    data: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seq": self.seq, "cycle": self.cycle, "pcpu": self.pcpu,
                               "dom": self.dom, "vcpu": self.vcpu, "kind": self.kind}
        for name in KINDS[self.kind].fields:
            if name in self.data:
                out[name] = self.data[name]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Event":
        kind = d["kind"]
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        data = {k: v for k, v in d.items() if k not in BASE_FIELDS}
        return cls(d["seq"], d["cycle"], d["pcpu"], d["dom"], d["vcpu"], kind, data)

    def summary(self) -> str:
        """One human line, as the log panes and ``xenlab run`` show it."""
        d = self.data
        k = self.kind
        if k == "hypercall":
            ret = d.get("ret")
            err = f" {d['errno']}" if d.get("errno") else ""
            return f"hypercall {d.get('name')}({d.get('nr')}) -> {ret}{err}"
        if k == "vmexit":
            return f"vmexit {d.get('reason')}({d.get('nr')}) at {d.get('rip', 0):#x}"
        if k == "trap":
            return f"trap {d.get('mnemonic')} vector {d.get('vector')} at {d.get('rip', 0):#x}"
        if k == "ioport":
            return f"{d.get('dir')} port {d.get('port', 0):#x} = {d.get('value', 0):#x} ({d.get('device')})"
        if k == "console":
            return f"console {d.get('text')!r}"
        parts = " ".join(f"{n}={d[n]}" for n in KINDS[k].fields if n in d and d[n] is not None)
        return f"{k} {parts}".rstrip()



def name_matches(ev: "Event", want: str) -> bool:
    """Whether ``ev``'s naming field (:data:`NAME_FIELD`) is ``want``: numbers by value
    (``0x10`` = 16), console text by substring, trap mnemonics with or without ``#``,
    names case-insensitively."""
    value = ev.data.get(NAME_FIELD.get(ev.kind, "name"))
    if value is None:
        return False
    if isinstance(value, int):
        try:
            return value == int(want, 0)
        except ValueError:
            return False
    if ev.kind == "console":
        return want in value
    if ev.kind == "trap" and not want.startswith("#") and want.upper() == value.lstrip("#"):
        return True
    return str(value).lower() == want.lower()


Listener = Callable[[Event], None]


class Trace:
    """The machine's event stream: kept whole, and fanned out to listeners."""

    def __init__(self, keep: bool = True) -> None:
        self.events: list[Event] = []
        self.keep = keep
        self.listeners: list[Listener] = []
        self.counts: dict[str, int] = {}
        self.seq = 0

    def add(self, ev: Event) -> None:
        self.seq = ev.seq + 1
        self.counts[ev.kind] = self.counts.get(ev.kind, 0) + 1
        if self.keep:
            self.events.append(ev)
        for fn in self.listeners:
            fn(ev)

    def emit(self, cycle: int, pcpu: int, dom: int | None, vcpu: int, kind: str, **data: Any) -> Event:
        ev = Event(self.seq, cycle, pcpu, dom, vcpu, kind, data)
        self.add(ev)
        return ev

    def of_kind(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    def write_jsonl(self, fp, header: dict[str, Any] | None = None) -> None:
        fp.write(json.dumps({"format": "xenlab-trace", "version": FORMAT_VERSION, **(header or {})},
                            separators=(",", ":")) + "\n")
        for ev in self.events:
            fp.write(ev.to_json() + "\n")

    # Snapshot support: the trace is part of the state that replay restores.
    def snapshot(self) -> tuple[int, int, dict[str, int]]:
        return (self.seq, len(self.events), dict(self.counts))

    # Its position is state; its events and listeners are not.
    def save_state(self) -> tuple[int, int, dict[str, int]]:
        return self.snapshot()

    def load_state(self, state: tuple[int, int, dict[str, int]]) -> None:
        self.restore(state)

    def restore(self, snap: tuple[int, int, dict[str, int]]) -> None:
        self.seq, n, counts = snap
        del self.events[n:]
        self.counts = dict(counts)


def read_jsonl(lines: Iterable[str]) -> tuple[dict[str, Any], list[Event]]:
    """Parse a trace file's lines into its header and events."""
    it = iter(lines)
    header = json.loads(next(it))
    if header.get("format") != "xenlab-trace":
        raise ValueError("not a xenlab trace (missing header)")
    if header.get("version", 0) > FORMAT_VERSION:
        raise ValueError(f"trace format version {header.get('version')} is newer than this lab's {FORMAT_VERSION}")
    return header, [Event.from_dict(json.loads(line)) for line in it if line.strip()]
