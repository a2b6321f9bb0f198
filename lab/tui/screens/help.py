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


def pane_help(title: str, text: str | None = None) -> str:
    """The row of help.md's pane table for the pane titled ``title`` (its tab title), or ""."""
    for line in (text if text is not None else help_text()).splitlines():
        if line.startswith(f"| **{title}** |"):
            return line.split("|", 3)[2].strip()
    return ""


def topic_page(title: str, keys: list[tuple[str, str]]) -> str:
    """The top of the help page when a pane has the focus: what it shows and its own keys."""
    about = pane_help(title)
    lines = [f"## This pane: {title}", "", about or "(no help for this pane)", ""]
    if keys:
        lines += ["Its keys: " + ", ".join(f"**{k}** {label}" for k, label in keys), ""]
    return "\n".join(lines) + "\n"


class HelpScreen(ModalScreen[None]):
    """A scrollable page of help; escape, F1 or q closes it."""

    CSS_PATH = str(TUI_DIR / "help.tcss")     # the package keeps its styles together
    BINDINGS = [
        Binding("escape,f1,q", "close", "Close", id="help.close", tooltip="Back to the lab"),
        Binding("up", "scroll(-1)", "Up", show=False, id="help.up", tooltip="Scroll up"),
        Binding("down", "scroll(1)", "Down", show=False, id="help.down", tooltip="Scroll down"),
    ]

    def __init__(self, topic: str = "") -> None:
        super().__init__()
        #: Markdown about the pane that had the focus, shown first (F1 follows the focus).
        self.topic = topic

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Static("xenlab help", id="help-title")
            if self.topic:
                yield Markdown(self.topic, id="help-topic")
            yield Markdown(help_text(), id="help-text")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#help-body").focus()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_scroll(self, delta: int) -> None:
        body = self.query_one("#help-body", VerticalScroll)
        body.scroll_relative(y=delta, animate=False)
