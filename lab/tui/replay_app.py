"""``xenlab replay FILE`` on screen: the lab on a recording, with a timeline to move along it.

The recording is replayed headless first (its whole timeline, so every point
of it can be reached), then the screen opens at its start. Every pane shows
the machine as it was at the current point; any command that changes the
machine takes over from there as a new live session ("branch from here"),
which ``record on FILE`` records.
"""

from __future__ import annotations

from typing import Any

from ..session.commands import REGISTRY
from ..session.recording import Recording
from ..session.timetravel import timeline_view
from ..trace import KINDS
from .app import XenLab
from .runner import Runner
from .screens.replay import ReplayScreen
from .widgets.timeline import Timeline

#: Screen ticks between two inputs while playing, at the slowest speed (F3/F4 change it).
PLAY_TICKS = 30


class ReplayLab(XenLab):
    def __init__(self, runner: Runner, recording: Recording, **kwargs: Any) -> None:
        super().__init__(runner, **kwargs)
        self.main = ReplayScreen(sorted(REGISTRY), sorted(KINDS))
        self.recording = recording
        self.playing = False
        #: Record the new session when the learner takes over (off in tests).
        self.record_branch = True
        self._timeline_key: tuple = ()

    def _on_tick(self) -> None:
        super()._on_tick()
        if self._exit or not self.main.is_mounted:
            return
        self.update_timeline()
        every = max(1, PLAY_TICKS // (1 + self.runner.speed))
        if self.playing and not self.runner.busy and self.ticks % every == 0:
            view = self.timeline()
            if view is None or view.live:
                self.playing = False
            else:
                self.runner.command("seek +input")

    def timeline(self):
        tm = self.runner.time_machine
        if tm is None:
            return None
        try:
            return timeline_view(tm)
        except Exception:           # the simulation thread is moving the machine: next tick
            return None

    def update_timeline(self) -> None:
        view = self.timeline()
        if view is None:
            return
        key = (view, self.size.width)
        if key != self._timeline_key:
            self._timeline_key = key
            self.main.query_one(Timeline).show_view(view)

    # -- keys -------------------------------------------------------------------------
    def action_play(self) -> None:
        self.playing = not self.playing
        self.main.show_message("playing the recording" if self.playing else "paused", "info")

    def action_back_insn(self) -> None:
        self.runner.command("back 1")

    def action_forward_insn(self) -> None:
        view = self.timeline()
        if view is not None and view.now < view.extent:
            self.runner.command(f"seek {view.now + 1}")

    def action_prev_input(self) -> None:
        self.runner.command("seek -input")

    def action_next_input(self) -> None:
        self.runner.command("seek +input")

    def action_prev_event(self) -> None:
        self.runner.command("back event")

    def action_next_event(self) -> None:
        session = self.runner.session
        if session is not None:
            self.runner.command(f"seek #{session.machine.trace.seq}")    # the next event to happen

    def on_mount(self) -> None:
        super().on_mount()
        tm = self.runner.time_machine
        if tm is not None:
            tm.on_branch.append(self._branched)

    def _branched(self) -> None:
        """The learner took over in the past: a new live session from here, recorded afresh."""
        if self.runner.recorder is None and self.record_branch:
            import shlex
            from ..session.live import default_recording_path
            self.runner.command(f"record on {shlex.quote(str(default_recording_path()))}")

    def action_prev_marker(self) -> None:
        self.runner.command("seek -mark")

    def action_next_marker(self) -> None:
        self.runner.command("seek +mark")


def make_replay_app(recording: Recording, *, theme: str | None = None, speed: int | None = None) -> ReplayLab:
    """Replay ``recording`` headless, then build (not run) the screen on it, at its start."""
    from ..session.replay import replay
    result = replay(recording, verify=False)
    session = result.session
    session.time_machine.goto(0, None)
    kwargs: dict[str, Any] = {}
    if speed is not None:
        kwargs["speed"] = speed
    return ReplayLab(Runner(session, **kwargs), recording, theme=theme,
                     subtitle=f"replay: {recording.path.name}")
