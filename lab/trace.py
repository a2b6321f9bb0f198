"""Trace events: the one stream of truth about what the machine did.

Every observable action of the simulated machine is an :class:`Event`. Panes,
statistics, lesson checks and recordings read events; none of them reaches
into the simulator. The JSON Lines form is a public format documented in
``docs/trace-format.md``; bump :data:`FORMAT_VERSION` on any incompatible
change.
"""

from __future__ import annotations

import json
import marshal
import os
import pickle
import tempfile
import zlib
from array import array
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from typing import IO, Any, Callable, Iterable, Iterator

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
    KindInfo("ioport", ("port", "size", "dir", "value", "device", "emulator"), "HVM",
             "an I/O port access (dir 'in' or 'out'), the device that claimed it and who emulated it "
             "('xen' or 'device model')"),
    KindInfo("mmio", ("addr", "size", "dir", "value", "device", "emulator", "count"), "HVM",
             "a memory-mapped I/O access, the device that answered and who emulated it ('xen' or 'device model')"),
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
            by = f", emulated by {d['emulator']}" if d.get("emulator") else ""
            return f"{d.get('dir')} port {d.get('port', 0):#x} = {d.get('value', 0):#x} ({d.get('device')}{by})"
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

#: Events kept in memory: what the panes, ``events`` and the checks look back on.
WINDOW = 20_000
#: Events per frame of the spill file.
FRAME = 8_192


class TraceSpill:
    """The full trace on disk: compact frames of a fixed number of events each, in seq order.

    A frame is the zlib-compressed ``marshal`` form of its events' tuples (``pickle``
    when a value is beyond ``marshal``), so events read back equal the events
    written. The file is an unnamed temporary file: it is gone when the trace is
    closed or the process ends, however it ends. It is private to this process and
    never read by another lab version, so its form can change freely.
    """

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        self._offsets = array("q")      # where each frame starts in the file
        self.first_seqs = array("q")    # the seq of each frame's first event
        self._end = 0

    @property
    def frames(self) -> int:
        return len(self._offsets)

    @property
    def bytes(self) -> int:
        return self._end

    def append(self, events: list[Event]) -> None:
        rows = [(e.seq, e.cycle, e.pcpu, e.dom, e.vcpu, e.kind, e.data) for e in events]
        try:
            blob = b"m" + zlib.compress(marshal.dumps(rows), 1)
        except ValueError:              # a value marshal cannot hold
            blob = b"p" + zlib.compress(pickle.dumps(rows, pickle.HIGHEST_PROTOCOL), 1)
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="xenlab-trace-")
        os.pwrite(self._file.fileno(), blob, self._end)
        self._offsets.append(self._end)
        self.first_seqs.append(events[0].seq)
        self._end += len(blob)

    def frame(self, i: int, count: int | None = None) -> list[Event]:
        """The events of frame ``i`` (its first ``count`` only, when given: only those are built)."""
        start = self._offsets[i]
        stop = self._offsets[i + 1] if i + 1 < len(self._offsets) else self._end
        assert self._file is not None           # a frame exists, so the file does
        blob = os.pread(self._file.fileno(), stop - start, start)
        raw = zlib.decompress(blob[1:])
        rows = marshal.loads(raw) if blob[:1] == b"m" else pickle.loads(raw)
        return [Event(*row) for row in (rows if count is None else rows[:count])]

    def truncate(self, frames: int) -> None:
        """Keep only the first ``frames`` frames."""
        if frames < len(self._offsets):
            self._end = self._offsets[frames]
            del self._offsets[frames:]
            del self.first_seqs[frames:]
            assert self._file is not None
            self._file.truncate(self._end)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._offsets = array("q")
        self.first_seqs = array("q")
        self._end = 0


class Trace:
    """The machine's event stream, fanned out to listeners as it happens.

    Memory stays bounded however long the machine runs: the last ``window`` events
    stay in memory (``recent``), every event goes, in frames, to a spill file on disk,
    and ``iter_all`` reads the whole stream back in order. Frames hold a fixed
    number of events, so a snapshot names its place by how many events were kept;
    seq numbers only grow (restoring a later snapshot skips ahead). With ``keep``
    false only the counts and the listeners see events.
    """

    def __init__(self, keep: bool = True, window: int = WINDOW, frame: int = FRAME) -> None:
        self.keep = keep
        self.frame_size = frame
        self.window_size = max(window, frame)
        self._window: deque[Event] = deque(maxlen=self.window_size)
        self._pending: list[Event] = []        # events after the last spilled frame
        self._spill = TraceSpill()
        self.listeners: list[Listener] = []
        self.counts: dict[str, int] = {}
        self.seq = 0
        #: (frame number, the first events of that frame as a snapshot saw them): a restore
        #: to a place inside that frame takes its events from here, not from the spill file.
        self._kept: tuple[int, list[Event]] | None = None

    def add(self, ev: Event) -> None:
        self.seq = ev.seq + 1
        self.counts[ev.kind] = self.counts.get(ev.kind, 0) + 1
        if self.keep:
            self._window.append(ev)
            pending = self._pending
            pending.append(ev)
            if len(pending) >= self.frame_size:
                self._spill.append(pending)
                self._pending = []
        for fn in self.listeners:
            fn(ev)

    def emit(self, cycle: int, pcpu: int, dom: int | None, vcpu: int, kind: str, **data: Any) -> Event:
        return self.record(cycle, pcpu, dom, vcpu, kind, data)

    def record(self, cycle: int, pcpu: int, dom: int | None, vcpu: int, kind: str, data: dict[str, Any]) -> Event:
        """:meth:`emit` with the fields already in a dict, which the event keeps (the caller's
        own ``**data``, so nothing else holds it): emitters pass theirs on without packing
        the keywords again."""
        # ``add`` inlined: this runs for every event the machine makes.
        seq = self.seq
        ev = Event(seq, cycle, pcpu, dom, vcpu, kind, data)
        self.seq = seq + 1
        counts = self.counts
        counts[kind] = counts.get(kind, 0) + 1
        if self.keep:
            self._window.append(ev)
            pending = self._pending
            pending.append(ev)
            if len(pending) >= self.frame_size:
                self._spill.append(pending)
                self._pending = []
        for fn in self.listeners:
            fn(ev)
        return ev

    # -- reading --------------------------------------------------------------
    def __len__(self) -> int:
        """How many events the trace holds (all of them, in memory or on disk)."""
        return self._spill.frames * self.frame_size + len(self._pending) if self.keep else 0

    def recent(self, n: int | None = None) -> list[Event]:
        """The last ``n`` events (at most the in-memory window), oldest first."""
        w = self._window
        if n is None or n >= len(w):
            return list(w)
        if n <= 0:
            return []
        return list(islice(w, len(w) - n, None))

    def iter_all(self) -> Iterator[Event]:
        """Every event from the first, in order: the spilled frames, then the rest."""
        frames = self._spill.frames
        pending = list(self._pending)
        for i in range(frames):
            yield from self._spill.frame(i)
        yield from pending

    def since(self, seq: int) -> list[Event]:
        """The events numbered ``seq`` and after, from memory when the window reaches back that far.

        Seq numbers only grow, but may skip (a machine restored to a later snapshot
        goes on from that snapshot's seq), so events are found by seq, not position."""
        w = self._window
        if not w or w[-1].seq < seq:
            return []
        if w[0].seq <= seq or len(w) == len(self):
            out: list[Event] = []
            for e in reversed(w):
                if e.seq < seq:
                    break
                out.append(e)
            out.reverse()
            return out
        first = max(bisect_right(self._spill.first_seqs, seq) - 1, 0)
        out = []
        for i in range(first, self._spill.frames):
            out.extend(e for e in self._spill.frame(i) if e.seq >= seq)
        out.extend(e for e in self._pending if e.seq >= seq)
        return out

    def count(self, kind: str | None = None) -> int:
        """Events of ``kind`` so far (of every kind with no argument), kept as they happen."""
        if kind is None:
            return sum(self.counts.values())
        return self.counts.get(kind, 0)

    def of_kind(self, kind: str) -> list[Event]:
        return [e for e in self.iter_all() if e.kind == kind]

    def last_matching(self, pred: Callable[[Event], bool], n: int) -> list[Event]:
        """The last ``n`` events for which ``pred`` holds, oldest first: from the window
        when it holds enough of them, else from the whole trace."""
        found = [e for e in self._window if pred(e)]
        w = self._window
        if len(found) >= n or len(w) == len(self):
            return found[-n:] if n > 0 else []
        tail: deque[Event] = deque(maxlen=max(n, 0))
        tail.extend(e for e in self.iter_all() if pred(e))
        return list(tail)

    def write_jsonl(self, fp, header: dict[str, Any] | None = None) -> None:
        fp.write(json.dumps({"format": "xenlab-trace", "version": FORMAT_VERSION, **(header or {})},
                            separators=(",", ":")) + "\n")
        for ev in self.iter_all():
            fp.write(ev.to_json() + "\n")

    @property
    def spilled_bytes(self) -> int:
        """Size of the spill file: what the trace holds on disk."""
        return self._spill.bytes

    def close(self) -> None:
        """Drop every kept event and the spill file (the counts and seq stay)."""
        self._spill.close()
        self._pending = []
        self._kept = None
        self._window.clear()

    # Snapshot support: the trace is part of the state that replay restores.
    def snapshot(self) -> tuple[int, int, dict[str, int]]:
        if self.keep:
            # The unfinished frame's events (events never change once made): restoring to here
            # after they have been spilled need not read the frame back and rebuild them.
            self._kept = (self._spill.frames, list(self._pending))
        return (self.seq, len(self), dict(self.counts))

    # Its position is state; its events and listeners are not.
    def save_state(self) -> tuple[int, int, dict[str, int]]:
        return self.snapshot()

    def load_state(self, state: tuple[int, int, dict[str, int]]) -> None:
        self.restore(state)

    def restore(self, snap: tuple[int, int, dict[str, int]]) -> None:
        self.seq, n, counts = snap
        self.counts = dict(counts)
        if not self.keep or n >= len(self):
            return
        frames = n // self.frame_size
        keep = n - frames * self.frame_size
        kept = self._kept
        if frames < self._spill.frames:
            if kept is not None and kept[0] == frames and len(kept[1]) >= keep:
                self._pending = kept[1][:keep]
            else:
                # Only the frame's events before the snapshot's place are kept: build those alone.
                self._pending = self._spill.frame(frames, keep)
            self._spill.truncate(frames)
        del self._pending[keep:]
        if kept is not None and kept[0] * self.frame_size + len(kept[1]) > n:
            # Events from n on are gone: what comes after them is another history.
            self._kept = (kept[0], kept[1][:n - kept[0] * self.frame_size]) if kept[0] <= frames else None
        self._refill_window()

    def _refill_window(self) -> None:
        """Rebuild the in-memory window from the end of the kept events."""
        tail: list[Event] = list(self._pending)
        i = self._spill.frames
        while len(tail) < self.window_size and i > 0:
            i -= 1
            tail[:0] = self._spill.frame(i)
        self._window.clear()
        self._window.extend(tail[-self.window_size:])


def read_jsonl(lines: Iterable[str]) -> tuple[dict[str, Any], list[Event]]:
    """Parse a trace file's lines into its header and events."""
    it = iter(lines)
    header = json.loads(next(it))
    if header.get("format") != "xenlab-trace":
        raise ValueError("not a xenlab trace (missing header)")
    if header.get("version", 0) > FORMAT_VERSION:
        raise ValueError(f"trace format version {header.get('version')} is newer than this lab's {FORMAT_VERSION}")
    return header, [Event.from_dict(json.loads(line)) for line in it if line.strip()]
