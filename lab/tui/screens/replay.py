"""The replay screen: the main screen plus a timeline, with keys to move along it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding

from ..widgets.timeline import Timeline
from .main import MainScreen

#: (key, action, label, tooltip): chords, so they work while the command line has the focus.
REPLAY_KEYS = (
    ("f10", "play", "Play", "Play the recording forward, input by input (again: pause)"),
    ("ctrl+left", "back_insn", "◀insn", "Step back one instruction"),
    ("ctrl+right", "forward_insn", "insn▶", "Step forward one instruction"),
    ("shift+left", "prev_input", "◀input", "Go to the previous input"),
    ("shift+right", "next_input", "input▶", "Go to the next input"),
    ("shift+up", "prev_event", "◀event", "Go back to just after the previous event"),
    ("shift+down", "next_event", "event▶", "Go on to just after the next event of the recording"),
    ("ctrl+up", "prev_marker", "◀mark", "Go to the previous marker"),
    ("ctrl+down", "next_marker", "mark▶", "Go to the next marker"),
)


class ReplayScreen(MainScreen):
    """Its timeline sits above the status bar; the app moves the session along it."""

    BINDINGS = [Binding(key, f"app.{action}", label, id=f"replay_{action}", tooltip=tip, priority=True)
                for key, action, label, tip in REPLAY_KEYS]

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            if widget.id == "status":
                yield Timeline(id="timeline")
            yield widget
