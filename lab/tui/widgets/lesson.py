"""The lesson panel: the step, progress through the lesson, the check's state live, and keys.

It only renders a :class:`~lab.lessons.tutor.StepState` and turns keys into
messages; the tutor (``lab/lessons``) holds the state and does the actions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import Static

if TYPE_CHECKING:        # only named here: the tutor loads with a lesson, not with the screen
    from ...lessons.tutor import StepState

#: The panel's keys (when it has the focus): key, lesson action, label.
PANEL_KEYS = (("h", "hint", "hint"), ("s", "solution", "solution"), ("r", "reset", "reset step"),
              ("R", "restart", "restart"), ("n", "next", "next"), ("p", "prev", "previous"),
              ("a", "answer", "answer"))


class LessonPanel(VerticalScroll, can_focus=True):
    """A lesson's current step; ``show`` redraws it only when something changed."""

    BINDINGS = [Binding(key, f"lesson('{action}')", label, id=f"lesson.{action}",
                        tooltip=f"Lesson: {label}") for key, action, label in PANEL_KEYS] + [
        Binding("right", "lesson('next')", "next", show=False, id="lesson.next_arrow"),
        Binding("left", "lesson('prev')", "previous", show=False, id="lesson.prev_arrow"),
    ]

    class Action(Message):
        """The learner asked for a lesson action (the app hands it to the tutor)."""

        def __init__(self, action: str) -> None:
            super().__init__()
            self.action = action

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.state: StepState | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="lesson-progress")
        yield Static("", id="lesson-check")
        yield Static("", id="lesson-text")
        yield Static("", id="lesson-question")
        yield Static("", id="lesson-help")
        yield Static(Content.from_markup(
            "[b]h[/] hint  [b]s[/] solution  [b]r[/] reset  [b]R[/] restart  [b]n[/]/[b]p[/] next/prev  "
            "[b]a[/] answer  ·  ctrl+l lessons"), id="lesson-keys")

    def action_lesson(self, action: str) -> None:
        self.post_message(self.Action(action))

    def show(self, st: StepState) -> None:
        if st == self.state:
            return
        old = self.state
        self.state = st
        self.border_title = f"Lesson: {st.lesson_title}"
        marks = "".join("●" if i in st.done_steps else ("◉" if i == st.index else "○") for i in range(st.total))
        self.query_one("#lesson-progress", Static).update(Content.assemble(
            (f"step {st.index + 1}/{st.total}  ", "bold"), marks, "\n", (st.title, "bold $accent")))
        if old is None or (old.index, old.text) != (st.index, st.text):
            from rich.markdown import Markdown      # markdown-it loads only when a lesson shows
            self.query_one("#lesson-text", Static).update(Markdown(st.text.strip()))
        if st.met:
            check = Content.styled("✓ done: " + ("the lesson is complete!" if st.finished else "press n for the next step"),
                                   "bold $text-success")
        elif st.awaiting_answer:       # progress, not a failure: the work is done, the question is left
            check = Content.assemble(("◐ objective met: ", "bold $text-success"),
                                     "now answer the question below (answer ...)")
        else:
            check = Content.assemble(("✗ not yet: ", "bold $text-warning"), st.missing)
        self.query_one("#lesson-check", Static).update(check)
        q = ""
        if st.question:
            q = f"Q: {st.question}"
            for i, choice in enumerate(st.choices):
                q += f"\n  {chr(ord('a') + i)}) {choice}"
            if st.feedback:
                q += f"\n{st.feedback}"
        self.query_one("#lesson-question", Static).update(Content(q))
        self.query_one("#lesson-question").display = bool(q)
        help_lines = [f"hint {i + 1}/{st.hints_total}: {h}" for i, h in enumerate(st.hints)]
        if st.solution is not None:
            help_lines.append("solution: " + " ; ".join(st.solution))
        self.query_one("#lesson-help", Static).update(Content("\n".join(help_lines)))
        self.query_one("#lesson-help").display = bool(help_lines)
