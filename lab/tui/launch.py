"""What the screen opens: its runner, with the machine booting from the moment it is made.

Nothing here imports Textual. The ``xenlab`` command starts the runner first, so
the machine boots while the screen's code loads and the first frame already shows
its domains instead of "booting" and, a moment later, a second full frame. By
default (on Linux) the simulation is forked into a process of its own
(lab/tui/sim_process.py): the boot and the screen's imports then truly run at
once, and the screen waits only for what is left of ``BOOT_WAIT`` (``await_boot``).
With ``XENLAB_SIM_THREAD=1`` the simulation runs on a thread of the screen's
process, and the screen's thread waits for the boot rather than load alongside
it: both are Python, so they would only take turns at one interpreter, and an
import gives the interpreter up at every file it opens. A boot that takes longer
than ``BOOT_WAIT`` (a large guest) goes on while the screen loads, which shows
"booting" meanwhile: the screen draws what the runner has, never a made-up machine.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from .runner import Runner
from .sim_process import ProcessRunner


def build_session(target: str | None = None, record: str | Path | None = None) -> Any:
    """The session for ``target``: a kernel source (.s) on the bare machine, a scenario
    (.toml), or an xl.cfg file; the default scenario (dom0, a PV and an HVM guest) if none.
    It can go back in time, and records to ``record`` when given."""
    from ..session.live import open_session
    from ..session.scenario import DEFAULT_SCENARIO
    return open_session([str(target) if target is not None else str(DEFAULT_SCENARIO)], record=record)


def separate_process_wanted() -> bool:
    """Whether the screen's simulation gets a process of its own: on Linux (where fork
    copies the booted program at once), unless ``XENLAB_SIM_THREAD=1`` asks for the thread."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") \
        and os.environ.get("XENLAB_SIM_THREAD", "") not in ("1", "yes", "true")


def make_runner(target: str | None = None, *, session: Any = None, lesson: Any = None, seed: int = 0,
                progress: Any = None, record: str | Path | None = None, speed: int | None = None,
                process: bool = False) -> Runner | ProcessRunner:
    """The runner (not started) on ``session``, on a machine built from ``target``, or on
    ``lesson``'s machine, whose tutor it holds once made. ``record``: record into this file.
    ``process``: the simulation in a process of its own (lab/tui/sim_process.py), else on a
    thread of the screen's."""
    kwargs: dict[str, Any] = {}
    if speed is not None:
        kwargs["speed"] = speed
    kind: Any = ProcessRunner if process else Runner
    if session is not None:
        return kind(session, **kwargs)
    if lesson is None:
        return kind(factory=lambda: build_session(target, record),
                    opener=lambda path: build_session(path, record), **kwargs)

    def lesson_session() -> tuple[Any, Any]:
        from ..session.lesson_play import open_lesson
        tutor = open_lesson(lesson, progress, seed=seed)
        tutor._restart = None               # the screen restarts a lesson by opening it again
        if record is not None:
            # Recorded like any session: its setup and the lesson's markers so far, then
            # every input, lesson actions included (docs/recordings.md).
            from ..session.recorder import start_recording
            start_recording(tutor.session, record)
        return tutor.session, tutor
    return kind(factory=lesson_session, **kwargs)


#: Seconds the screen waits for the machine to boot before it loads anyway.
BOOT_WAIT = 0.5


def start_runner(target: str | None = None, *, wait: float = BOOT_WAIT, process: bool | None = None,
                 **kwargs: Any) -> Runner | ProcessRunner:
    """``make_runner``, started. On a thread, once the machine has booted (or ``wait`` seconds
    passed); in a process of its own (``process``, by default where it can be had) at once:
    the machine boots there while this process loads the screen (``await_boot`` then waits
    for the rest of ``wait``)."""
    if process is None:
        process = separate_process_wanted()
    runner = make_runner(target, process=process, **kwargs)
    started = time.monotonic()
    runner.start()
    if isinstance(runner, ProcessRunner):
        runner.boot_deadline = started + wait
    else:
        runner.booted.wait(wait)
    return runner


def await_boot(runner: Runner | ProcessRunner) -> None:
    """Before the first frame: give a machine booting in its own process what is left of the
    start's ``wait``, so that the first frame shows it booted (a slower boot goes on while the
    screen shows "booting")."""
    deadline = runner.boot_deadline if isinstance(runner, ProcessRunner) else None
    if deadline is not None:
        runner.booted.wait(max(0.0, deadline - time.monotonic()))
