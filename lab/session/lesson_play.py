"""A lesson on a session: its machine booted and set up, its solutions or a learner's file played.

``xenlab lesson ID --solve`` and ``--check FILE`` use :func:`play`; the screen
uses :func:`open_lesson` to get the session and the tutor that follows it.
Lines of a lesson script are the lab's commands, plus ``answer ...`` and
``lesson ACTION`` (hint, next, ...), which go to the tutor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, TextIO

from ..errors import UserError
from ..lessons.model import Lesson
from ..lessons.progress import Progress
from ..lessons.tutor import Tutor
from ..paths import display
from .commands import execute
from .session import Session


def boot_session(lesson: Lesson) -> Session:
    """A fresh machine for ``lesson``: its scenario booted and its setup commands run."""
    from .live import open_session
    session = open_session([str(p) for p in lesson.scenario])      # back and seek work in lessons too
    for line in lesson.setup:
        try:
            execute(session, line)
        except UserError as e:
            raise UserError(f"{display(lesson.path)}: setup '{line}': {e}") from None
    return session


def open_lesson(lesson: Lesson, progress: Progress | None = None, seed: int = 0) -> Tutor:
    """The tutor of ``lesson`` on a fresh session (``tutor.session``), restartable."""
    return Tutor(lesson, boot_session(lesson), progress=progress, restart=lambda: boot_session(lesson), seed=seed,
                 command=execute)


def perform(tutor: Tutor, line: str) -> str:
    """One line of a lesson script: a lesson action or a command of the lab."""
    words = line.split(maxsplit=1)
    if words and words[0] == "answer":
        # a lesson's own lines may name a drill's numbers: answer {{drill.l4}}
        return tutor.act("answer", tutor.render(words[1]) if len(words) > 1 else "")
    if words and words[0] == "lesson":
        action, _, arg = (words[1] if len(words) > 1 else "").partition(" ")
        return tutor.act(action, arg)
    return execute(tutor.session, line)


@dataclass
class StepResult:
    index: int
    title: str
    met: bool
    missing: str = ""
    errors: list[str] = field(default_factory=list)


def _script_lines(lines: Iterable[str]) -> list[str]:
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def solve(tutor: Tutor) -> list[StepResult]:
    """Play every step's own solution, in order, and report each step's check."""
    results = []
    steps = tutor.lesson.steps
    for i, step in enumerate(steps):
        if tutor.index != i:
            tutor.act("goto", str(i + 1))
        errors = []
        for line in step.solution:
            try:
                perform(tutor, line)
            except UserError as e:
                errors.append(f"'{line}': {e}")
        tutor.evaluate()
        results.append(StepResult(i, step.title, tutor.met, tutor.missing, errors))
    return results


def check_script(tutor: Tutor, lines: Iterable[str]) -> list[StepResult]:
    """Play a learner's lines; each time the current step's check is met, move to the next step."""
    results: list[StepResult] = []
    errors: list[str] = []
    steps = tutor.lesson.steps
    for line in _script_lines(lines):
        try:
            perform(tutor, line)
        except UserError as e:
            errors.append(f"'{line}': {e}")
        tutor.evaluate()
        if tutor.met and tutor.index not in {r.index for r in results}:
            results.append(StepResult(tutor.index, tutor.step.title, True, "", errors))
            errors = []
            if tutor.index + 1 < len(steps):
                tutor.act("next")
            else:
                break
    if len(results) < len(steps) and tutor.index not in {r.index for r in results}:
        results.append(StepResult(tutor.index, tutor.step.title, False, tutor.missing, errors))
    return results


def format_results(lesson: Lesson, results: list[StepResult], out: TextIO) -> bool:
    """Print one line per step (and what is missing); True when every step was met."""
    n = len(lesson.steps)
    for r in results:
        state = "met" if r.met else f"NOT MET: {r.missing}"
        out.write(f"step {r.index + 1}/{n} {r.title}: {state}\n")
        for e in r.errors:
            out.write(f"    error: {e}\n")
    met = sum(1 for r in results if r.met)
    out.write(f"{lesson.id}: {met} of {n} steps met\n")
    return met == n


def rehearse(tutor: Tutor) -> list[str]:
    """Try each step's ``wrong`` and ``right`` lines; the problems found (empty: none).

    At each step, every ``wrong`` list is played and must leave the check unmet
    (too loose otherwise); then the step begins again (``lesson reset``: the
    machine goes back to where the step began) and every ``right`` list (or, if
    there is none, the solution) is played from there and must meet it (too
    strict otherwise). The next step starts where the last right list left the
    machine, so one machine serves the whole lesson.
    """
    problems = []
    for i, step in enumerate(tutor.lesson.steps):
        tutor.act("goto", str(i + 1))
        for lines in step.wrong:
            for line in lines:
                try:
                    perform(tutor, line)
                except UserError:
                    pass                       # a mistake may well be an error
            tutor.evaluate()
            if tutor.met:
                problems.append(f"step {i + 1}: the wrong try {lines} meets the check '{step.check_text}' "
                                f"(too loose)")
            tutor.act("reset")
        rights = step.right or [step.solution]
        for k, lines in enumerate(rights):
            for line in lines:
                try:
                    perform(tutor, line)
                except UserError as e:
                    problems.append(f"step {i + 1}: '{line}' of a right try failed: {e}")
            tutor.evaluate()
            if not tutor.met:
                problems.append(f"step {i + 1}: the right try {lines} does not meet the check (too strict): "
                                f"{tutor.missing}")
            if k + 1 < len(rights):
                tutor.act("reset")
    return problems
