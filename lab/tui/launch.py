"""What the screen opens: its runner, with the machine booting from the moment it is made.

Nothing here imports Textual. The ``xenlab`` command starts the runner first and
lets the machine boot before it loads the screen's code, so the first frame
already shows the machine's domains instead of "booting" and, a moment later,
a second full frame. The screen's thread waits for the boot rather than load
alongside it: both are Python, so they would only take turns at one
interpreter, and an import gives the interpreter up at every file it opens,
to get it back only when the boot's thread next lets go (up to 5 ms later, and
longer on a busy computer). A boot that takes longer than ``BOOT_WAIT`` (a
large guest) goes on while the screen loads, which shows "booting" meanwhile:
the screen draws what the runner has, never a made-up machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .runner import Runner


def build_session(target: str | None = None, record: str | Path | None = None) -> Any:
    """The session for ``target``: a kernel source (.s) on the bare machine, a scenario
    (.toml), or an xl.cfg file; the default scenario (dom0, a PV and an HVM guest) if none.
    It can go back in time, and records to ``record`` when given."""
    from ..session.live import open_session
    from ..session.scenario import DEFAULT_SCENARIO
    return open_session([str(target) if target is not None else str(DEFAULT_SCENARIO)], record=record)


def make_runner(target: str | None = None, *, session: Any = None, lesson: Any = None, seed: int = 0,
                progress: Any = None, record: str | Path | None = None, speed: int | None = None) -> Runner:
    """The runner (not started) on ``session``, on a machine built from ``target``, or on
    ``lesson``'s machine, whose tutor it holds once made. ``record``: record into this file."""
    kwargs: dict[str, Any] = {}
    if speed is not None:
        kwargs["speed"] = speed
    if session is not None:
        return Runner(session, **kwargs)
    if lesson is None:
        return Runner(factory=lambda: build_session(target, record),
                      opener=lambda path: build_session(path, record), **kwargs)
    runner_box: list[Runner] = []

    def lesson_session() -> Any:
        from ..session.lesson_play import open_lesson
        tutor = open_lesson(lesson, progress, seed=seed)
        tutor._restart = None               # the screen restarts a lesson by opening it again
        if record is not None:
            # Recorded like any session: its setup and the lesson's markers so far, then
            # every input, lesson actions included (docs/recordings.md).
            from ..session.recorder import start_recording
            start_recording(tutor.session, record)
        runner_box[0].tutor = tutor
        return tutor.session
    runner = Runner(factory=lesson_session, **kwargs)
    runner_box.append(runner)
    return runner


#: Seconds the screen waits for the machine to boot before it loads anyway.
BOOT_WAIT = 0.5


def start_runner(target: str | None = None, *, wait: float = BOOT_WAIT, **kwargs: Any) -> Runner:
    """``make_runner``, started, once the machine has booted (or ``wait`` seconds passed)."""
    runner = make_runner(target, **kwargs)
    runner.start()
    runner.booted.wait(wait)
    return runner
