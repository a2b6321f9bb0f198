"""Time travel: the session's inputs on a timeline, and going to any point of it.

A session's machine is a pure function of its sources and the inputs applied
to it (the simulator is deterministic), so any past moment can be had again
by building the machine afresh from the sources and re-executing the inputs
up to that moment: the last one only up to the instruction count wanted.
Where the machine can save and load its state (``snapshot()`` and
``restore()``), states saved along the way make this fast: a trip restores the
nearest earlier saved state and re-executes only from there.

Positions: ``(i, cap)`` is "inputs 0..i-1 applied, then input i applied up to
``cap`` instructions" (``cap`` None: input i not begun). Going back does not
forget the future: ``seek`` forward again replays it. A new input given in the
past cuts the future off there and starts a new one (the learner took over).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .. import sources
from ..errors import UserError
from ..sources import DiskStart, ServedSource
from .commands import execute
from .session import Input, Session
from .targets import build_target

#: Commands that move along the timeline (or only look at it): never re-executed.
TRAVEL_COMMANDS = frozenset({"back", "seek", "mark", "record", "timeline", "reset"})
#: Commands that cannot change the session's machine: not re-executed either.
PURE_COMMANDS = frozenset({"help", "compare", "digest"})
#: Saved states kept at most (thinned evenly beyond this).
MAX_SAVED = 256
#: Inside a long input on a machine whose runs split exactly, save a state every so many instructions.
SAVE_EVERY = 100_000
#: Arriving inside an input, also save this many instructions before the point (then ``back``
#: from there re-executes at most a few thousand instructions).
NEAR_SAVES = (65_536, 16_384, 4_096, 1_024, 256)


@dataclass
class Origin:
    """How to build the session's machine again: the build and every file it read."""
    build: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    disks: dict[str, DiskStart] = field(default_factory=dict)
    #: A live session may read files it has not captured yet from the disk; a replay never.
    strict: bool = False

    def add_file(self, key: str, data: bytes) -> None:
        self.files.setdefault(key, data)

    def add_disk(self, key: str, start: DiskStart) -> None:
        self.disks.setdefault(key, start)

    def build_machine(self) -> tuple[str, Any, list[str]]:
        """(kind, machine, warnings), built from the captured files only."""
        served = _Served(self) if not self.strict else ServedSource(self.files, self.disks)
        b = self.build
        with sources.using(served):
            kind, machine, _xl, warnings = build_target(
                [str(sources.path_of(t)) for t in b["targets"]],
                str(sources.path_of(b["program"])) if b.get("program") else None,
                int(b.get("arg", 0)),
                str(sources.path_of(b["costs"])) if b.get("costs") else None)
        return kind, machine, list(warnings)


class _Served(ServedSource):
    """The captured files; a file not captured yet is read from the disk (and captured)."""

    def __init__(self, origin: Origin) -> None:
        super().__init__(origin.files, origin.disks)
        self.origin = origin

    def read_bytes(self, path):
        key = sources.source_key(path)
        if key not in self.files:
            self.origin.add_file(key, sources.FileSource().read_bytes(path))
        return self.files[key]

    def is_file(self, path) -> bool:
        return super().is_file(path) or sources.FileSource().is_file(path)

    def exists(self, path) -> bool:
        return self.is_file(path)


def build_spec(targets: list[str], program: str | None = None, arg: int = 0,
               costs: str | None = None) -> dict[str, Any]:
    """A build as a recording names it: files by their recording names."""
    return {"targets": [sources.source_key(t) for t in targets],
            "program": sources.source_key(program) if program else None,
            "arg": arg, "costs": sources.source_key(costs) if costs else None}


@dataclass
class Step:
    """One input on the timeline: where it began, where it ended, and ``cap`` if it was cut short."""
    input: Input
    start: int
    end: int
    seq_start: int
    seq_end: int
    cap: int | None = None
    #: Set once the input has taken effect (its end is known).
    closed: bool = False


def changes_machine(inp: Input) -> bool:
    if inp.kind == "command":
        word = inp.text.split(maxsplit=1)[0] if inp.text.strip() else ""
        return word not in TRAVEL_COMMANDS and word not in PURE_COMMANDS
    return inp.kind == "run"


def apply_input(session: Session, kind: str, text: str) -> None:
    """Re-execute one input quietly (no listeners told, its answer dropped)."""
    listeners, applied, checkpoints = session.input_listeners, session.applied_listeners, session.checkpoints
    session.input_listeners, session.applied_listeners, session.checkpoints = [], [], []
    try:
        if kind == "command":
            try:
                execute(session, text)
            except UserError:
                pass                    # it failed the first time too: the same failure
        elif kind == "run":
            run_to(session, text)
    finally:
        session.input_listeners, session.applied_listeners, session.checkpoints = listeners, applied, checkpoints
        session._applying = True        # the input being travelled from has not finished yet


def run_to(session: Session, text: str) -> None:
    """A run the screen paused: ``X`` (to instruction count X) or ``X by N`` (in runs of N, as it ran)."""
    words = text.split()
    try:
        target = int(words[0])
        chunk = int(words[2]) if len(words) == 3 and words[1] == "by" else None
    except (IndexError, ValueError):
        raise UserError(f"a run input must be 'INSNS' or 'INSNS by N', not '{text}'") from None
    while True:
        now = session.clock()[0]
        if now >= target or session.machine.stopped:
            return
        n = target - now if chunk is None else min(chunk, target - now)
        session.run(n)
        if session.break_hit is not None or session.clock()[0] == now:
            return


class TimeMachine:
    """The timeline of one session, and travel along it."""

    def __init__(self, session: Session, origin: Origin) -> None:
        self.session = session
        self.origin = origin
        self.steps: list[Step] = []
        #: Where the machine is: (i, cap), see the module's doc.
        self.position: tuple[int, int | None] = (0, None)
        #: Saved states by position: (i, insns) -> (snapshot, session state).
        self._saved: dict[tuple[int, int], tuple[Any, tuple]] = {}
        self.markers: dict[str, tuple[int, int | None, int]] = {}
        #: Told the new machine whenever travel had to build one (front ends re-attach listeners).
        self.on_replace: list[Callable[[Any], None]] = []
        #: Called after every trip: what the front ends showed of the trace is now another time's.
        self.on_travel: list[Callable[[], None]] = []
        #: Called when an input given in the past cut the future off (the learner took over).
        self.on_branch: list[Callable[[], None]] = []
        self.can_snapshot = callable(getattr(session.machine, "snapshot", None)) and \
            callable(getattr(session.machine, "restore", None))
        #: Whether runs on this machine can be cut and continued exactly (the bare machine's can).
        self.splits_exactly = not isinstance(getattr(session.machine, "domains", None), dict)
        self.trips = 0
        self.reexecuted = 0
        session.time_machine = self
        session.input_listeners.append(self._on_input)
        session.applied_listeners.append(self._close_last)
        if self.can_snapshot:
            session.add_checkpoint(SAVE_EVERY, self._save_inside)

    # -- the live edge -------------------------------------------------------------
    @property
    def live(self) -> bool:
        return self.position == (len(self.steps), None)

    def _on_input(self, inp: Input) -> None:
        self._close_last()
        if not changes_machine(inp):
            return
        if not self.live:
            self._cut_future()
        m = self.session.machine
        if inp.applied:
            # a run the screen made outside the command language: it has already happened
            seq = self.steps[-1].seq_end if self.steps else 0
            self.steps.append(Step(inp, inp.insns, self.now(), seq, m.trace.seq, closed=True))
        else:
            self._save((len(self.steps), inp.insns))
            self.steps.append(Step(inp, inp.insns, inp.insns, m.trace.seq, m.trace.seq))
        self.position = (len(self.steps), None)

    def _close_last(self) -> None:
        """The last input has finished: note where it ended."""
        if self.steps and self.live and not self.steps[-1].closed:
            last = self.steps[-1]
            last.end = self.session.clock()[0]
            last.seq_end = self.session.machine.trace.seq
            last.closed = True

    def _cut_future(self) -> None:
        i, cap = self.position
        del self.steps[i + (1 if cap is not None else 0):]
        if cap is not None:
            st = self.steps[i]
            st.cap, st.end, st.seq_end = cap, self.session.clock()[0], self.session.machine.trace.seq
            st.closed = True
        self._saved = {k: v for k, v in self._saved.items() if k[0] <= i}
        self.markers = {k: v for k, v in self.markers.items() if v[0] < len(self.steps) or
                        (v[0] == len(self.steps) and v[1] is None)}
        self.position = (len(self.steps), None)
        for fn in list(self.on_branch):
            fn()

    # -- where things are ----------------------------------------------------------
    def now(self) -> int:
        return self.session.clock()[0]

    def extent(self) -> int:
        """The instruction count at the end of the timeline."""
        self.session._catch_up()
        self._close_last()
        return self.steps[-1].end if self.steps else (self.now() if self.live else 0)

    def mark(self, name: str) -> str:
        if not name or any(c.isspace() for c in name) or name[0].isdigit() or name[0] == "#":
            raise UserError("a marker's name is one word that does not start with a digit or '#'")
        i, cap = self.position
        self.markers[name] = (i, cap, self.now())
        return f"marker '{name}' at instruction {self.now():,}"

    # -- travel --------------------------------------------------------------------
    def seek_insns(self, target: int) -> None:
        """To the first moment the machine had run ``target`` instructions."""
        self._close_last()
        end = self.extent()
        if target < 0 or target > end:
            raise UserError(f"instruction {target:,} is outside this session (0..{end:,})")
        for i, st in enumerate(self.steps):
            if st.start == target:
                return self.goto(i, None)
            if st.start < target <= st.end:
                if target == st.end and st.cap is None and self._ends_at_cap(st):
                    return self.goto(i + 1, None)
                return self.goto(i, target)
        self.goto(len(self.steps), None)

    def _save_inside(self) -> None:
        """A live run passed a multiple of SAVE_EVERY: save here if the run can go on from here."""
        if self.steps and self.live and not self.steps[-1].closed and self._continuable(self.steps[-1]):
            self._save((len(self.steps) - 1, self.now()), within=True)

    def _continuable(self, st: Step) -> bool:
        """Whether input ``st``, cut at a pause point, can be continued exactly with a plain run."""
        if self.splits_exactly:
            return self._ends_at_cap(st)
        # a Xen host's run goes on from between two vCPU runs as if it had not stopped
        words = st.input.text.split()
        return st.input.kind == "command" and len(words) == 2 and words[0] == "run"

    def _ends_at_cap(self, st: Step) -> bool:
        """A run or step command ends where its last instruction does: no work after it."""
        word = st.input.text.split(maxsplit=1)[0] if st.input.kind == "command" else "run"
        return word in ("run", "step")

    def seek_event(self, seq: int) -> None:
        """To just after event ``seq`` happened."""
        self._close_last()
        for i, st in enumerate(self.steps):
            if st.seq_start <= seq < st.seq_end:
                x = self._insns_at_event(i, seq)
                for cap in (x, x + 1):
                    if cap > st.start and (cap <= st.end):
                        self.goto(i, cap)
                        if self.session.machine.trace.seq > seq:
                            return
                self.goto(i + 1, None)      # work of the input's own (xl create...), not of instructions
                return
        raise UserError(f"event #{seq} did not happen on this timeline")

    def _insns_at_event(self, i: int, seq: int) -> int:
        self.goto(i, None)
        found: list[int] = []
        s = self.session

        def watch(ev) -> None:
            if ev.seq == seq and not found:
                found.append(s.clock()[0])
        trace = s.machine.trace
        trace.listeners.append(watch)
        try:
            self._apply(self.steps[i], None)
        finally:
            trace.listeners.remove(watch)
        self.position = (i + 1, None)
        if not found:
            raise UserError(f"event #{seq} did not happen again when input {i} was re-executed")
        return found[0]

    def seek_marker(self, name: str) -> None:
        if name not in self.markers:
            known = ", ".join(sorted(self.markers)) or "none yet"
            raise UserError(f"no marker '{name}' (markers: {known})")
        i, cap, _ = self.markers[name]
        self.goto(i, cap)

    def back_events(self, kind: str | None) -> int:
        """To just after the last event (of ``kind``) that happened before now; its seq."""
        trace = self.session.machine.trace
        now_seq = trace.seq
        here = self.now()
        # The last few such events are enough: the latest may be at this very instruction.
        candidates = trace.last_matching(lambda e: e.seq < now_seq and (kind is None or e.kind == kind), 8)
        if not trace.keep:
            raise UserError("this machine keeps no trace to go back through")
        for ev in reversed(candidates):
            self.seek_event(ev.seq)
            if self.now() < here or self.session.machine.trace.seq < now_seq:
                return ev.seq
        what = f"{kind} event" if kind else "event"
        self.seek_insns(here)
        raise UserError(f"no earlier {what} in this session")

    def goto(self, i: int, cap: int | None) -> None:
        """Put the whole session at position ``(i, cap)``."""
        self._close_last()
        if i > len(self.steps) or (i == len(self.steps) and cap is not None):
            raise UserError("that point is beyond the end of the session")
        self.trips += 1
        want = (i, cap if cap is not None else self._start_of(i))
        here = self._here_key()
        best = self._best_saved(want)
        if here is not None and here <= want and (best is None or best <= here):
            pass                                    # on the way: go on from here
        elif best is not None:
            self._restore(best)
        else:
            self._rebuild()
        self._forward(i, cap)
        # The machine is where travel put it, not where a run of the screen's took it.
        self.session._applied_clock = self.session.clock()
        for fn in list(self.on_travel):
            fn()

    def _start_of(self, i: int) -> int:
        if i < len(self.steps):
            return self.steps[i].start
        return self.steps[-1].end if self.steps else self.now()

    def _here_key(self) -> tuple[int, int] | None:
        """Where the machine is, if it can go on forward from there exactly."""
        j, partial = self.position
        if partial is None:
            return (j, self._start_of(j))
        if self._continuable(self.steps[j]) and (self.splits_exactly or (j, partial) in self._saved):
            # (a Xen host's run goes on exactly only from between two vCPU runs: where states are saved)
            return (j, partial)
        return None

    def _forward(self, i: int, cap: int | None) -> None:
        while self.position[0] < i:
            j, partial = self.position
            st = self.steps[j]
            if partial is None:
                self._apply(st, None)
            else:
                self._continue(st, st.end if st.cap is None else st.cap)
            self.position = (j + 1, None)
            self._save((j + 1, self._start_of(j + 1)))
        if cap is not None:
            j, partial = self.position
            st = self.steps[i]
            if self.can_snapshot and self.splits_exactly and self._ends_at_cap(st):
                # Save states closer and closer to the point on the way, so that stepping
                # back from it again and again re-executes little each time.
                here = partial if partial is not None else st.start
                for x in sorted({cap - d for d in NEAR_SAVES if here < cap - d}):
                    if partial is None:
                        self._apply(st, x)
                    else:
                        self._continue(st, x)
                    partial = self.now()
                    self.position = (i, partial)
                    self._save((i, partial), within=True)
            if partial is None:
                self._apply(st, cap)
            elif partial < cap:
                self._continue(st, cap)
            self.position = (i, cap)

    def _apply(self, st: Step, cap: int | None) -> None:
        """Re-execute input ``st`` up to ``cap`` instructions (or its own cut), saving states inside long ones."""
        s = self.session
        limit = st.cap if cap is None else (cap if st.cap is None else min(cap, st.cap))
        goal = limit if limit is not None else st.end
        before = self.now()
        within = self.can_snapshot and self.splits_exactly and self._ends_at_cap(st) \
            and st.end - st.start > SAVE_EVERY
        s.insn_cap = min(goal, st.start + SAVE_EVERY) if within else limit
        try:
            apply_input(s, st.input.kind, st.input.text)
        finally:
            s.insn_cap = None
        if within:
            # On this machine a cut run goes on exactly as if it had not been cut:
            # save a state every SAVE_EVERY instructions on the way.
            i = self.steps.index(st)
            while True:
                x = self.now()
                if x >= goal or s.machine.stopped or s.break_hit is not None:
                    break
                self._save((i, x), within=True)
                self._continue(st, min(goal, x + SAVE_EVERY))
                if self.now() == x:
                    break
        self.reexecuted += self.now() - before

    def _continue(self, st: Step, target: int) -> None:
        """Run on inside input ``st`` (a run or step) from a cut, as the input would have."""
        n = target - self.now()
        if n > 0:
            self.session.run(n)

    def move_input(self, delta: int) -> None:
        """To the start of the next (+1) or previous (-1) input; the end after the last."""
        self._close_last()
        i, cap = self.position
        if delta > 0:
            if i >= len(self.steps):
                raise UserError("already at the end of the session")
            self.goto(i + 1, None)
        else:
            if cap is None and i == 0:
                raise UserError("already at the start of the session")
            self.goto(i if cap is not None else i - 1, None)

    def move_marker(self, delta: int) -> str:
        """To the next (+1) or previous (-1) marker; its name."""
        here = self._key(*self.position)
        ordered = sorted(self.markers.items(), key=lambda kv: (self._key(kv[1][0], kv[1][1]), kv[0]))
        if delta > 0:
            nxt = [kv for kv in ordered if self._key(kv[1][0], kv[1][1]) > here]
            pick = nxt[0] if nxt else None
        else:
            prev = [kv for kv in ordered if self._key(kv[1][0], kv[1][1]) < here]
            pick = prev[-1] if prev else None
        if pick is None:
            raise UserError(f"no {'later' if delta > 0 else 'earlier'} marker")
        self.goto(pick[1][0], pick[1][1])
        return pick[0]

    def _key(self, i: int, cap: int | None) -> tuple[int, int]:
        return (i, cap if cap is not None else self._start_of(i))

    # -- saved states ----------------------------------------------------------------
    def _save(self, key: tuple[int, int], within: bool = False) -> None:
        if not self.can_snapshot or key in self._saved:
            return
        s = self.session
        snap = s.machine.snapshot()
        if self._saved:
            _share_unchanged(snap, self._saved[max(self._saved)][0])
        self._saved[key] = (snap, (list(s.breakpoints), s._focus))
        if len(self._saved) > MAX_SAVED:
            keys = sorted(self._saved)
            for k in keys[1:-1:2]:            # every other one, keeping the first and the newest
                del self._saved[k]

    def _best_saved(self, want: tuple[int, int]) -> tuple[int, int] | None:
        """The latest saved state at or before ``want`` (input, instructions)."""
        keys = [k for k in self._saved if k <= want]
        return max(keys) if keys else None

    def _restore(self, key: tuple[int, int]) -> None:
        snap, (breakpoints, focus) = self._saved[key]
        s = self.session
        s.machine.restore(snap)
        s.breakpoints[:] = breakpoints
        s._focus = focus
        s.break_hit = None
        i, insns = key
        st = self.steps[i] if i < len(self.steps) else None
        self.position = (i, None) if st is None or insns == st.start else (i, insns)

    def _rebuild(self) -> None:
        """A fresh machine from the session's sources, before its first input."""
        _kind, machine, _warnings = self.origin.build_machine()
        s = self.session
        s.replace_machine(machine)
        s.breakpoints.clear()
        s._focus = 0
        s.break_hit = None
        self.position = (0, None)
        for fn in list(self.on_replace):
            fn(machine)

    # -- figures ---------------------------------------------------------------------
    def saved_bytes(self) -> int:
        """About how much memory the saved states hold."""
        snaps = [snap for snap, _ in self._saved.values()]
        from ..hw.snapshot import Snapshot, snapshot_nbytes
        if snaps and all(isinstance(s, Snapshot) for s in snaps):
            return snapshot_nbytes(snaps)           # counting what the snapshots share once
        seen: set[int] = set()
        return sum(_size(snap, 0, seen) for snap in snaps)


def _share_unchanged(snap: Any, before: Any) -> None:
    """Let a new snapshot hold the very bytes of an older one wherever a page is unchanged:
    a few pages change between two saved states, so each costs only what changed."""
    if not isinstance(snap, dict) or not isinstance(before, dict):
        return
    for key, value in snap.items():
        old = before.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            for k, v in value.items():
                if isinstance(v, bytes):
                    o = old.get(k)
                    if o is not None and o is not v and o == v:
                        value[k] = o
                elif isinstance(v, dict):
                    _share_unchanged({k: v}, {k: old.get(k)})


def _size(obj: Any, depth: int = 0, seen: set[int] | None = None) -> int:
    seen = set() if seen is None else seen
    if isinstance(obj, (bytes, bytearray)):
        if id(obj) in seen:
            return 0                    # shared with another saved state
        seen.add(id(obj))
        return len(obj)
    if depth > 6:
        return 0
    if isinstance(obj, dict):
        return sum(_size(v, depth + 1, seen) for v in obj.values()) + 64 * len(obj)
    if isinstance(obj, (list, tuple)):
        return sum(_size(v, depth + 1, seen) for v in obj) + 8 * len(obj)
    return 32


@dataclass(frozen=True)
class TimelineView:
    """What a timeline shows: where the session is, how far it goes, its inputs and markers."""
    now: int
    extent: int
    inputs: tuple[int, ...]
    markers: tuple[tuple[str, int], ...]
    input_index: int
    live: bool


def timeline_view(tm: TimeMachine) -> TimelineView:
    steps = list(tm.steps)
    i, _cap = tm.position
    end = max([st.end for st in steps] + [tm.now()])
    return TimelineView(tm.now(), end, tuple(st.start for st in steps),
                        tuple(sorted(((name, ins) for name, (_, _, ins) in tm.markers.items()),
                                     key=lambda m: (m[1], m[0]))),
                        min(i, len(steps)), tm.position == (len(steps), None))


def attach(session: Session, origin: Origin) -> TimeMachine:
    return TimeMachine(session, origin)


__all__ = ["Origin", "TimeMachine", "Step", "TimelineView", "apply_input", "build_spec", "attach",
           "changes_machine", "run_to", "timeline_view"]
