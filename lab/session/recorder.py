"""Recording a live session: its inputs, digests and markers written as they happen.

Below the command language (whose ``record`` command starts and stops a recording here) and
below the session opener (which records from the start when asked), so neither reaches up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .recording import RecordingWriter, memory_due
from .session import Input, Session


def on_live_edge(session: Session) -> bool:
    """Whether the session runs at its live edge (not re-executing its past to travel there)."""
    tm = getattr(session, "time_machine", None)
    return tm is None or tm.live


class SessionRecorder:
    """Writes a session's inputs, digests and markers to a recording as they happen."""

    def __init__(self, session: Session, writer: RecordingWriter, n: int = -1, start: bool = True) -> None:
        self.session = session
        self.writer = writer
        self.n = n
        #: The instruction count at the last digest line that covered the memory.
        self.last_memory = session.clock()[0]
        if start:
            writer.start(session.machine)
        session.input_listeners.append(self._on_input)
        session.applied_listeners.append(self._on_applied)
        self._every = writer.digest_every
        self._stop_checkpoints = session.add_checkpoint(self._every, self._on_checkpoint)

    def _on_checkpoint(self) -> None:
        if not on_live_edge(self.session):
            return                  # a trip re-executing the past: no input of the session's is running
        now = self.session.clock()[0]
        if not self.writer.closed and memory_due(self.last_memory, now, self._every):
            self.writer.digest(self.session.machine, "interval", self.n)
            self.last_memory = now

    @property
    def path(self) -> Path:
        return self.writer.path

    @property
    def active(self) -> bool:
        return not self.writer.closed

    def _on_applied(self) -> None:
        if not self.writer.closed and self.n >= 0:
            # what input n left behind; its memory only every so often (reading it all is the cost)
            now = self.session.clock()[0]
            memory = memory_due(self.last_memory, now, self._every)
            self.writer.digest(self.session.machine, "input", self.n, memory=memory)
            if memory:
                self.last_memory = now

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


def start_recording(session: Session, path: str | Path) -> SessionRecorder:
    """Record the session into a new file: from its start (the inputs of its timeline up to
    here, without digests, which would mean running it all again), then on as it goes."""
    tm = session.time_machine          # the session's TimeMachine: its origin, steps and markers
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
    # Markers set between inputs go in as the 'mark' commands that set them, so that a
    # 'seek NAME' recorded later finds them on replay (a lesson's reset is one).
    marks: dict[int, list[str]] = {}
    for name, (at, within, _insns) in tm.markers.items():
        if within is None:
            marks.setdefault(at, []).append(name)
    shown = tm.steps[:i + (1 if cap is not None else 0)]
    for k, st in enumerate(shown):
        for name in marks.get(k, []):
            n += 1
            writer.input(n, "command", f"mark {name}", st.input.insns, st.input.cycles)
            writer.mark(name, st.input.insns, n)
        n += 1
        writer.input(n, st.input.kind, st.input.text, st.input.insns, st.input.cycles)
    if cap is None:
        for name in marks.get(len(shown), []):
            n += 1
            writer.input(n, "command", f"mark {name}", *session.clock())
            writer.mark(name, session.clock()[0], n)
    if cap is not None:
        n += 1           # the session is inside that input: say where, as the learner would
        writer.input(n, "command", f"seek {cap}", *session.clock())
    rec = SessionRecorder(session, writer, n, start=False)
    if n >= 0:
        # where the recording begins: after those inputs, written without their digests
        writer.digest(session.machine, "start", n)
    session.recorder = rec
    return rec


def stop_recording(session: Session) -> Any:
    rec = getattr(session, "recorder", None)
    if rec is not None:
        rec.finish()
    session.recorder = None
    return rec
