"""The lesson picker: the course with each lesson's status; Enter opens one."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from ...errors import UserError
from ...lessons.model import Lesson, load_course
from ...lessons.progress import Progress


class LessonPicker(ModalScreen[str | None]):
    """Dismissed with the chosen lesson's id, or None."""

    BINDINGS = [Binding("escape", "close", "Close", id="lessons.close", tooltip="Back to the lab")]

    def __init__(self, lessons: list[Lesson] | None = None, progress: Progress | None = None) -> None:
        super().__init__()
        self.error = ""
        if lessons is None:
            try:
                lessons = load_course()
            except UserError as e:         # a broken lesson file: say so, list nothing
                self.error = str(e)
                lessons = []
        self.lessons = lessons
        self.progress = progress

    def compose(self) -> ComposeResult:
        with Vertical(id="lessons-box"):
            yield Static("Lessons: Enter opens one (on a fresh machine), Esc goes back", id="lessons-title")
            options = []
            for n, lesson in enumerate(self.lessons, 1):
                status = self.progress.status(lesson.id, len(lesson.steps)) if self.progress else ""
                # Content: the text is never read as markup ("[new]" would vanish)
                options.append(Option(Content(f"{n:>2}. {lesson.title}  [{status}]\n    {lesson.summary}"),
                                      id=lesson.id))
            yield OptionList(*options, id="lessons-list")
            if self.error:
                yield Static(self.error, id="lessons-error")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_close(self) -> None:
        self.dismiss(None)
