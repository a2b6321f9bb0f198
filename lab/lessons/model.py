"""Lesson files (``lessons/*.toml``): loaded, validated, and every mistake named by file and line.

The format is documented in docs/lessons.md. A lesson is data: its checks are
parsed by :mod:`lab.lessons.checks`, its texts may name live values
(``{{focus.ring}}``) from a fixed list, and nothing in it is executed as Python.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..paths import LESSONS, MACHINES, display
from .checks import CheckSyntaxError, Node, parse_check

#: ``{{name}}`` in a step's text or a question: a live value or a drill's number.
PLACEHOLDER = re.compile(r"\{\{\s*([a-z0-9_.]+)\s*\}\}")
#: What a text may name. ``focus.*`` and ``last.*`` are read from the machine when shown;
#: ``drill.*`` are fixed by the lesson's seed.
LIVE_VALUES = {
    "focus.name": "the focused domain (or the bare machine)",
    "focus.ring": "the focused vCPU's current privilege level (CPL)",
    "focus.mode": "root or non-root",
    "focus.rip": "the focused vCPU's instruction pointer",
    "focus.cr3": "the focused vCPU's CR3",
    "last.hypercall": "the last hypercall's name and number",
    "last.vmexit": "the last VM exit's reason and number",
    "last.trap": "the last trap's mnemonic",
    "seed": "the lesson's seed (drills)",
}
DRILL_VALUES = {
    "drill.address": "the address the seed picked (hex)",
    "drill.l4": "its index in the L4 table (bits 47..39)",
    "drill.l3": "its index in the L3 table (bits 38..30)",
    "drill.l2": "its index in the L2 table (bits 29..21)",
    "drill.l1": "its index in the L1 table (bits 20..12)",
    "drill.offset": "its offset in the page (bits 11..0, hex)",
}

_TOP_KEYS = {"title", "summary", "assumes", "order", "scenario", "setup", "step", "drill", "pause_when_met"}
_STEP_KEYS = {"title", "text", "check", "hints", "solution", "question", "pause_when_met", "wrong", "right"}
_QUESTION_KEYS = {"ask", "choices", "answer", "explain", "why"}


class LessonError(UserError):
    """A broken lesson file: ``file:line: problem``."""


@dataclass
class Question:
    ask: str
    answer: str                      # a choice's letter, or a number (as written)
    choices: list[str] = field(default_factory=list)
    explain: dict[str, str] = field(default_factory=dict)   # wrong answer -> why not
    why: str = ""                     # shown when the answer is right

    @property
    def numeric(self) -> bool:
        return not self.choices

    def letters(self) -> list[str]:
        return [chr(ord("a") + i) for i in range(len(self.choices))]


@dataclass
class Step:
    title: str
    text: str
    check: Node
    check_text: str
    hints: list[str]
    solution: list[str]
    question: Question | None = None
    pause_when_met: bool = False
    line: int = 0
    #: Commands that must not meet the check (a plausible mistake) and that must
    #: (another right way): the lesson's own tests of its check, run by the test suite.
    wrong: list[list[str]] = field(default_factory=list)
    right: list[list[str]] = field(default_factory=list)


@dataclass
class Lesson:
    id: str
    path: Path
    title: str
    summary: str
    assumes: list[str]
    order: int
    scenario: list[Path]
    setup: list[str]
    steps: list[Step]
    drill: str | None = None

    @property
    def is_drill(self) -> bool:
        return self.drill is not None


class _Locator:
    """Lines of a lesson file's keys, for messages (tomllib keeps no positions)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.step_lines = [i for i, line in enumerate(self.lines) if re.match(r"\s*\[\[\s*step\s*\]\]", line)]

    def _region(self, step: int | None) -> tuple[int, int]:
        if step is None:
            return 0, self.step_lines[0] if self.step_lines else len(self.lines)
        start = self.step_lines[step]
        end = self.step_lines[step + 1] if step + 1 < len(self.step_lines) else len(self.lines)
        return start, end

    def line(self, step: int | None = None, key: str | None = None, question: bool = False) -> int:
        start, end = self._region(step)
        if question:
            for i in range(start, end):
                if re.match(r"\s*\[\s*step\s*\.\s*question\s*\]", self.lines[i]) \
                        or re.match(r"\s*question\s*=", self.lines[i]):
                    start = i
                    break
        if key is not None:
            for i in range(start, end):
                if re.match(rf"\s*{re.escape(key)}\s*=", self.lines[i]):
                    return i + 1
        return start + 1 if step is not None else 1

    def column_of_value(self, line: int) -> int:
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        for q in ('"""', "'''", '"', "'"):
            k = text.find(q, text.find("="))
            if k >= 0:
                return k + len(q) + 1
        return 1


def _fail(path: Path, line: int, msg: str, col: int | None = None) -> LessonError:
    where = f"{display(path)}:{line}" + (f":{col}" if col else "")
    return LessonError(f"{where}: {msg}")


def _str(path: Path, loc: _Locator, data: dict, key: str, step: int | None, *, required: bool = True,
         question: bool = False) -> str:
    value = data.get(key)
    if value is None:
        if required:
            what = f"step {step + 1}" if step is not None else "the lesson"
            raise _fail(path, loc.line(step, question=question), f"{what}{' question' if question else ''} "
                        f"needs {key} = \"...\"")
        return ""
    if not isinstance(value, str):
        raise _fail(path, loc.line(step, key, question), f"{key} must be a string, not {value!r}")
    return value


def _strings(path: Path, loc: _Locator, data: dict, key: str, step: int | None) -> list[str]:
    value = data.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(path, loc.line(step, key), f"{key} must be a list of strings")
    return value


def _check_placeholders(path: Path, line: int, text: str, drill: bool) -> None:
    for m in PLACEHOLDER.finditer(text):
        name = m.group(1)
        if name in LIVE_VALUES or (drill and name in DRILL_VALUES):
            continue
        known = sorted(LIVE_VALUES) + (sorted(DRILL_VALUES) if drill else [])
        raise _fail(path, line, f"unknown value {{{{{name}}}}} (known: {', '.join(known)})")


def _scenario(path: Path, loc: _Locator, data: dict) -> list[Path]:
    value = data.get("scenario", "default.toml")
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
        raise _fail(path, loc.line(None, "scenario"),
                    "scenario must be a scenario file or a list of xl.cfg files under machines/")
    out = []
    for item in items:
        p = Path(item)
        full = p if p.is_absolute() else (MACHINES / p if (MACHINES / p).exists() else path.parent / p)
        if not full.exists():
            raise _fail(path, loc.line(None, "scenario"), f"scenario '{item}' not found under machines/")
        if full.suffix not in (".toml", ".cfg", ".s"):
            raise _fail(path, loc.line(None, "scenario"), f"scenario '{item}' is not a .toml, .cfg or .s file")
        out.append(full)
    kinds = {p.suffix for p in out}
    if len(out) > 1 and kinds != {".cfg"}:
        raise _fail(path, loc.line(None, "scenario"), "a list of scenarios must be xl.cfg files only")
    return out


def _question(path: Path, loc: _Locator, i: int, q: Any, drill: bool) -> Question:
    if not isinstance(q, dict):
        raise _fail(path, loc.line(i, "question"), "question must be a table: [step.question]")
    extra = sorted(set(q) - _QUESTION_KEYS)
    if extra:
        raise _fail(path, loc.line(i, extra[0], question=True),
                    f"a question has no key '{extra[0]}' (known: {', '.join(sorted(_QUESTION_KEYS))})")
    ask = _str(path, loc, q, "ask", i, question=True)
    choices = q.get("choices", [])
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise _fail(path, loc.line(i, "choices", True), "choices must be a list of strings")
    if "answer" not in q:
        raise _fail(path, loc.line(i, question=True), f"step {i + 1} question needs answer = ...")
    answer = q["answer"]
    if isinstance(answer, bool) or not isinstance(answer, (str, int)):
        raise _fail(path, loc.line(i, "answer", True), "answer must be a choice's letter or a number")
    answer = str(answer).strip().lower()
    letters = [chr(ord("a") + k) for k in range(len(choices))]
    if choices and answer not in letters:
        raise _fail(path, loc.line(i, "answer", True),
                    f"answer '{answer}' is not one of the choices ({', '.join(letters)})")
    if not choices and not PLACEHOLDER.fullmatch(answer):
        try:
            int(answer, 0)
        except ValueError:
            raise _fail(path, loc.line(i, "answer", True),
                        f"answer '{answer}' is not a number (give choices for a multiple-choice question)") from None
    if PLACEHOLDER.search(answer):
        _check_placeholders(path, loc.line(i, "answer", True), answer, drill)
    explain = q.get("explain", {})
    if not isinstance(explain, dict) or not all(isinstance(v, str) for v in explain.values()):
        raise _fail(path, loc.line(i, "explain", True), "explain must be a table: wrong answer = \"why not\"")
    for key in explain:
        if choices and key.lower() not in letters:
            raise _fail(path, loc.line(i, "explain", True), f"explain names '{key}', which is not a choice")
    why = _str(path, loc, q, "why", i, required=False, question=True)
    _check_placeholders(path, loc.line(i, "ask", True), ask, drill)
    return Question(ask, answer, choices, {k.lower(): v for k, v in explain.items()}, why)


def _step(path: Path, loc: _Locator, i: int, s: Any, default_pause: bool, drill: bool) -> Step:
    if not isinstance(s, dict):
        raise _fail(path, loc.line(i), "each [[step]] must be a table")
    extra = sorted(set(s) - _STEP_KEYS)
    if extra:
        raise _fail(path, loc.line(i, extra[0]),
                    f"a step has no key '{extra[0]}' (known: {', '.join(sorted(_STEP_KEYS))})")
    title = _str(path, loc, s, "title", i)
    text = _str(path, loc, s, "text", i)
    _check_placeholders(path, loc.line(i, "text"), text, drill)
    question = _question(path, loc, i, s["question"], drill) if "question" in s else None
    check_text = _str(path, loc, s, "check", i, required=question is None) or "true"
    line = loc.line(i, "check")
    try:
        check = parse_check(check_text)
    except CheckSyntaxError as e:
        col = loc.column_of_value(line) + e.column - 1 if "check" in s and "\n" not in check_text else None
        raise _fail(path, line, f"step {i + 1} check: {e}", col) from None
    hints = _strings(path, loc, s, "hints", i)
    solution = _strings(path, loc, s, "solution", i)
    if not hints:
        raise _fail(path, loc.line(i), f"step {i + 1} needs at least one hint: hints = [\"...\"]")
    if not solution:
        raise _fail(path, loc.line(i), f"step {i + 1} needs a solution: solution = [\"command\", ...]")
    if question is not None and not any(w.startswith("answer ") for w in solution):
        raise _fail(path, loc.line(i, "solution"), f"step {i + 1} asks a question: its solution must end "
                    f"with 'answer ...'")
    pause = s.get("pause_when_met", default_pause)
    if not isinstance(pause, bool):
        raise _fail(path, loc.line(i, "pause_when_met"), "pause_when_met must be true or false")
    tries: dict[str, list[list[str]]] = {}
    for key in ("wrong", "right"):
        value = s.get(key, [])
        if not isinstance(value, list) or not all(
                isinstance(v, list) and all(isinstance(w, str) for w in v) for v in value):
            raise _fail(path, loc.line(i, key), f"{key} must be a list of command lists: [[\"cmd\", ...], ...]")
        tries[key] = value
    return Step(title, text, check, check_text, hints, solution, question, pause, loc.line(i),
                tries["wrong"], tries["right"])


def load_lesson(path: Path | str) -> Lesson:
    """Load and validate one lesson file; any problem is a :class:`LessonError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LessonError(f"{display(p)}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LessonError(f"{display(p)}: cannot read: {e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e))
        if m:
            raise _fail(p, int(m.group(1)), msg, int(m.group(2))) from None
        raise LessonError(f"{display(p)}: {msg}") from None
    loc = _Locator(text)
    extra = sorted(set(data) - _TOP_KEYS)
    if extra:
        raise _fail(p, loc.line(None, extra[0]),
                    f"a lesson has no key '{extra[0]}' (known: {', '.join(sorted(_TOP_KEYS))})")
    title = _str(p, loc, data, "title", None)
    summary = _str(p, loc, data, "summary", None)
    assumes = _strings(p, loc, data, "assumes", None)
    order = data.get("order", 1000)
    if isinstance(order, bool) or not isinstance(order, int):
        raise _fail(p, loc.line(None, "order"), "order must be a whole number")
    drill = data.get("drill")
    if drill is not None and drill != "page-walk":
        raise _fail(p, loc.line(None, "drill"), f"unknown drill '{drill}' (known: page-walk)")
    scenario = _scenario(p, loc, data)
    setup = _strings(p, loc, data, "setup", None)
    default_pause = data.get("pause_when_met", False)
    if not isinstance(default_pause, bool):
        raise _fail(p, loc.line(None, "pause_when_met"), "pause_when_met must be true or false")
    steps_data = data.get("step")
    if not isinstance(steps_data, list) or not steps_data:
        raise _fail(p, len(loc.lines) or 1, "a lesson needs at least one [[step]]")
    steps = [_step(p, loc, i, s, default_pause, drill is not None) for i, s in enumerate(steps_data)]
    return Lesson(p.stem, p, title, summary, assumes, order, scenario, setup, steps, drill)


def course(folder: Path = LESSONS) -> list[Path]:
    """The lesson files of a course folder, in file-name order (their ``order`` sorts them later)."""
    return sorted(folder.glob("*.toml")) if folder.is_dir() else []


def load_course(folder: Path = LESSONS) -> list[Lesson]:
    lessons = [load_lesson(p) for p in course(folder)]
    return sorted(lessons, key=lambda lesson: (lesson.order, lesson.id))


def find_lesson(name: str, folder: Path = LESSONS) -> Lesson:
    """A lesson by id (``tour``), by number in the course (``1``) or by file path."""
    p = Path(name)
    if p.suffix == ".toml" and p.exists():
        return load_lesson(p)
    candidate = folder / f"{name}.toml"
    if candidate.exists():
        return load_lesson(candidate)
    lessons = load_course(folder)
    if name.isdigit() and 1 <= int(name) <= len(lessons):
        return lessons[int(name) - 1]
    ids = ", ".join(lesson.id for lesson in lessons)
    raise UserError(f"no lesson '{name}' (xenlab lessons lists them: {ids})")
