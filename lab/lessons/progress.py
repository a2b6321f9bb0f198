"""The learner's progress: lessons and steps done, answers given, in one plain JSON file.

It lives in the user's data directory (``$XENLAB_DATA`` if set, else
platformdirs' user data dir for ``xenlab``), is written atomically (a
temporary file beside it, flushed, then renamed over it), and a file that is
corrupt or not ours is set aside under a new name with a message, never lost
and never a crash.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "xenlab-progress"
VERSION = 1
FILE_NAME = "progress.json"


def default_path() -> Path:
    env = os.environ.get("XENLAB_DATA")
    if env:
        return Path(env) / FILE_NAME
    import platformdirs
    return Path(platformdirs.user_data_dir("xenlab", appauthor=False)) / FILE_NAME


@dataclass
class LessonProgress:
    steps_done: set[int] = field(default_factory=set)
    answers: dict[int, str] = field(default_factory=dict)
    current: int = 0
    done: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"steps_done": sorted(self.steps_done), "answers": {str(k): v for k, v in sorted(self.answers.items())},
                "current": self.current, "done": self.done}

    @classmethod
    def from_json(cls, d: Any) -> "LessonProgress":
        if not isinstance(d, dict):
            raise ValueError("a lesson's entry is not an object")
        steps = d.get("steps_done", [])
        answers = d.get("answers", {})
        current = d.get("current", 0)
        if not isinstance(steps, list) or not all(isinstance(s, int) for s in steps) \
                or not isinstance(answers, dict) or not isinstance(current, int):
            raise ValueError("a lesson's entry has fields of the wrong type")
        return cls(set(steps), {int(k): str(v) for k, v in answers.items()}, current, bool(d.get("done", False)))


class Progress:
    """Read once, changed in memory, saved after every change."""

    def __init__(self, path: Path | None = None, *, save: bool = True) -> None:
        self.path = path or default_path()
        self.lessons: dict[str, LessonProgress] = {}
        self.saving = save
        #: What happened on load that the learner should know (a file set aside).
        self.notice: str | None = None
        self._load()

    def _load(self) -> None:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError) as e:
            self._set_aside(f"cannot be read ({e})")
            return
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError("it is not a xenlab progress file")
            if not isinstance(data.get("version"), int) or data["version"] > VERSION:
                raise ValueError(f"its version {data.get('version')!r} is not one this lab reads")
            lessons = data.get("lessons", {})
            if not isinstance(lessons, dict):
                raise ValueError("'lessons' is not an object")
            self.lessons = {str(k): LessonProgress.from_json(v) for k, v in lessons.items()}
        except (ValueError, TypeError) as e:
            self.lessons = {}
            self._set_aside(str(e))

    def _set_aside(self, why: str) -> None:
        n = 1
        while (aside := self.path.with_name(f"{self.path.name}.broken-{n}")).exists():
            n += 1
        try:
            os.replace(self.path, aside)
            self.notice = (f"{self.path}: {why}; it was set aside as {aside.name} and progress starts afresh")
        except OSError as e:
            self.saving = False         # never overwrite what we could not move away
            self.notice = f"{self.path}: {why}, and it could not be set aside ({e.strerror}); progress is not saved"

    def of(self, lesson_id: str) -> LessonProgress:
        return self.lessons.setdefault(lesson_id, LessonProgress())

    def status(self, lesson_id: str, steps: int) -> str:
        p = self.lessons.get(lesson_id)
        if p is None or (not p.steps_done and not p.done):
            return "new"
        if p.done:
            return "done"
        return f"{len(p.steps_done & set(range(steps)))}/{steps}"

    def reset(self, lesson_id: str | None = None) -> None:
        if lesson_id is None:
            self.lessons.clear()
        else:
            self.lessons.pop(lesson_id, None)
        self.save()

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION,
                "lessons": {k: v.to_json() for k, v in sorted(self.lessons.items())}}

    def save(self) -> None:
        """Write the file atomically: a reader sees the old file or the new one, never half."""
        if not self.saving:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fp:
                json.dump(self.to_json(), fp, indent=1)
                fp.write("\n")
                fp.flush()
                os.fsync(fp.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
