"""The lab with the first lesson open, as the snapshot tests see it: built, never run here."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lab.lessons.model import find_lesson  # noqa: E402
from lab.lessons.progress import Progress  # noqa: E402
from lab.tui.app import make_app  # noqa: E402


def build():
    progress = Progress(Path("/nonexistent/progress.json"), save=False)     # nothing read, nothing written
    return make_app(lesson=find_lesson("tour"), theme="textual-dark", progress=progress)


app = build()
