"""A live session: built from its sources, able to go back in time, and recorded if asked.

Every front end opens its session here, so the shell, ``xenlab exec``, the
screen and a replay all get the same time travel and the same recordings.
"""

from __future__ import annotations

import os

import weakref
from pathlib import Path

from .. import sources
from ..sources import DiskStart
from .recorder import SessionRecorder
from .recording import RecordingWriter
from .session import Session
from .targets import build_target
from .timetravel import Origin, TimeMachine, build_spec


def open_session(targets: list[str], program: str | None = None, arg: int = 0, costs: str | None = None,
                 record: str | Path | None = None, quiet_warnings: list[str] | None = None) -> Session:
    """Build the machine the targets name, as a session that can travel in time (and record)."""
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


def default_recording_path() -> Path:
    """Where the screen records a session unless told not to: the lab's data directory."""
    import time
    from ..hw.diskimage import data_dir
    stamp = time.strftime("%Y%m%d-%H%M%S")      # a file name only; the machine never sees the clock
    return data_dir() / "recordings" / f"session-{stamp}-{os.getpid()}.jsonl"
