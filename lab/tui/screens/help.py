"""The help screen: panes, keys and commands, from ``help.md``."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Markdown, Static

TUI_DIR = Path(__file__).resolve().parent.parent
HELP_FILE = TUI_DIR / "help.md"


def help_text() -> str:
    try:
        return HELP_FILE.read_text(encoding="utf-8")
    except OSError as e:      # a broken install should still open the screen
        return f"# Help\n\nThe help file could not be read: {e.strerror}."


class HelpScreen(ModalScreen[None]):
    """A scrollable page of help; escape, F1 or q closes it."""

    CSS_PATH = str(TUI_DIR / "help.tcss")     # the package keeps its styles together
    BINDINGS = [
        Binding("escape,f1,q", "close", "Close", id="help.close", tooltip="Back to the lab"),
        Binding("up", "scroll(-1)", "Up", show=False, id="help.up", tooltip="Scroll up"),
        Binding("down", "scroll(1)", "Down", show=False, id="help.down", tooltip="Scroll down"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Static("xenlab help", id="help-title")
            yield Markdown(help_text(), id="help-text")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#help-body").focus()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_scroll(self, delta: int) -> None:
        body = self.query_one("#help-body", VerticalScroll)
        body.scroll_relative(y=delta, animate=False)
