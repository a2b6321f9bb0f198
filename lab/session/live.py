"""A live session: built from its sources, able to go back in time, and recorded if asked.

Every front end opens its session here, so the shell, ``xenlab exec``, the
screen and a replay all get the same time travel and the same recordings.
"""

from __future__ import annotations

import os

import weakref
from pathlib import Path
from typing import Any

from .. import sources
from ..sources import DiskStart
from .recording import DIGEST_EVERY, RecordingWriter
from .session import Input, Session
from .timetravel import Origin, TimeMachine, build_spec


class SessionRecorder:
    """Writes a session's inputs, digests and markers to a recording as they happen."""

    def __init__(self, session: Session, writer: RecordingWriter, n: int = -1, start: bool = True) -> None:
        self.session = session
        self.writer = writer
        self.n = n
        if start:
            writer.start(session.machine)
        session.input_listeners.append(self._on_input)
        session.applied_listeners.append(self._on_applied)
        self._stop_checkpoints = session.add_checkpoint(DIGEST_EVERY, self._on_checkpoint)

    def _on_checkpoint(self) -> None:
        if not self.writer.closed:
            self.writer.digest(self.session.machine, "interval", self.n)

    @property
    def path(self) -> Path:
        return self.writer.path

    @property
    def active(self) -> bool:
        return not self.writer.closed

    def _on_applied(self) -> None:
        if not self.writer.closed and self.n >= 0:
            self.writer.digest(self.session.machine, "input", self.n)     # what input n left behind

    def _on_input(self, inp: Input) -> None:
        if self.writer.closed:
            return
        self.n += 1
        self.writer.input(self.n, inp.kind, inp.text, inp.insns, inp.cycles)
        words = inp.text.split()
        if inp.kind == "command" and len(words) == 2 and words[0] == "mark":
            self.writer.mark(words[1], inp.insns, self.n)
        elif inp.kind == "lesson":
            self.writer.mark(f"lesson:{inp.text}", inp.insns, self.n)

    def finish(self) -> None:
        """The end line (with the last digest); the file is complete."""
        if not self.writer.closed:
            self.session._catch_up()        # a run the screen made since the last input
            self.writer.end(self.session.machine, self.n)
        for listeners, fn in ((self.session.input_listeners, self._on_input),
                              (self.session.applied_listeners, self._on_applied)):
            if fn in listeners:
                listeners.remove(fn)
        self._stop_checkpoints()
        if self.session.recorder is self:
            self.session.recorder = None


def open_session(targets: list[str], program: str | None = None, arg: int = 0, costs: str | None = None,
                 record: str | Path | None = None, quiet_warnings: list[str] | None = None) -> Session:
    """Build the machine the targets name, as a session that can travel in time (and record)."""
    from .headless import build_target
    build = build_spec(targets, program, arg, costs)
    origin = Origin(build)
    writer = None
    if record is not None:
        kind_guess = "native" if all(str(t).endswith(".s") for t in targets) else "xen"
        writer = RecordingWriter(record, build, kind_guess)

    # Weak references: a session nobody holds any more stops listening by itself.
    origin_ref = weakref.ref(origin)
    writer_ref = weakref.ref(writer) if writer is not None else (lambda: None)

    def on_file(key: str, data: bytes) -> None:
        o, w = origin_ref(), writer_ref()
        if o is None:
            stop()
            return
        o.add_file(key, data)
        if w is not None and not w.closed:
            w.add_file(key, data)

    def on_disk(key: str, start: DiskStart) -> None:
        o, w = origin_ref(), writer_ref()
        if o is None:
            stop()
            return
        o.add_disk(key, start)
        if w is not None and not w.closed:
            w.add_disk(key, start)

    # Files read later (xl create of a new config) belong to this session too.
    stop = sources.watch(on_file, on_disk)
    try:
        kind, machine, _xl, warnings = build_target([str(t) for t in targets], program, arg, costs)
    except BaseException:
        stop()
        if writer is not None:
            writer.close()
            Path(writer.path).unlink(missing_ok=True)
        raise
    if quiet_warnings is not None:
        quiet_warnings.extend(warnings)
    session = Session(machine)
    session.stop_watching = stop
    TimeMachine(session, origin)
    session.recorder = None
    if writer is not None:
        writer.kind = kind
        session.recorder = SessionRecorder(session, writer)
    return session


def start_recording(session: Session, path: str | Path) -> SessionRecorder:
    """Record the session into a new file: from its start (the inputs of its timeline up to
    here, without digests, which would mean running it all again), then on as it goes."""
    tm: TimeMachine = session.time_machine
    stop_recording(session)
    kind = "xen" if isinstance(getattr(session.machine, "domains", None), dict) else "native"
    writer = RecordingWriter(path, tm.origin.build, kind)
    for key, data in tm.origin.files.items():
        writer.add_file(key, data)
    for key, start in tm.origin.disks.items():
        writer.add_disk(key, start)
    writer.start(None)
    i, cap = tm.position
    n = -1
    for st in tm.steps[:i + (1 if cap is not None else 0)]:
        n += 1
        writer.input(n, st.input.kind, st.input.text, st.input.insns, st.input.cycles)
    if cap is not None:
        n += 1           # the session is inside that input: say where, as the learner would
        writer.input(n, "command", f"seek {cap}", *session.clock())
    rec = SessionRecorder(session, writer, n, start=False)
    if n >= 0:
        writer.digest(session.machine, "input", n)
    session.recorder = rec
    return rec


def stop_recording(session: Session) -> Any:
    rec = getattr(session, "recorder", None)
    if rec is not None:
        rec.finish()
    session.recorder = None
    return rec


def default_recording_path() -> Path:
    """Where the screen records a session unless told not to: the lab's data directory."""
    import time
    from ..hw.diskimage import data_dir
    stamp = time.strftime("%Y%m%d-%H%M%S")      # a file name only; the machine never sees the clock
    return data_dir() / "recordings" / f"session-{stamp}-{os.getpid()}.jsonl"
