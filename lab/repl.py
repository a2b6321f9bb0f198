"""The lab's shell: the TUI's command line without the screen.

``xenlab shell [TARGET]`` is an interactive prompt (prompt-toolkit: history,
completion of command names); ``xenlab exec TARGET -c "step 5; walk"`` runs
commands non-interactively and prints what each says, which makes every
feature of the screen scriptable.
"""

from __future__ import annotations

import sys
from typing import Iterable, TextIO

from .errors import LabBug, UserError
from .session.commands import REGISTRY, execute
from .session.session import Session


def open_session(target: str | None, record: str | None = None) -> Session:
    """The session a target names, able to go back in time; recorded to ``record`` if given."""
    from .session import live
    from .session.scenario import DEFAULT_SCENARIO
    warnings: list[str] = []
    session = live.open_session([target or str(DEFAULT_SCENARIO)], record=record, quiet_warnings=warnings)
    for w in warnings:
        print(w, file=sys.stderr)
    return session


def run_script(session: Session, lines: Iterable[str], out: TextIO) -> int:
    """Run each command; a failing one prints its error and stops: status 2 for a mistake in
    the script, 1 for an internal error of the lab."""
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.write(f"xen> {line}\n")
        try:
            text = execute(session, line)
        except UserError as e:
            print(str(e), file=sys.stderr)
            return 1 if isinstance(e, LabBug) else 2
        if text:
            out.write(text.rstrip("\n") + "\n")
    return 0


def answer(session: Session, line: str) -> str:
    """What the interactive shell prints for one line: the answer, or the error; never an exception."""
    try:
        return execute(session, line)
    except UserError as e:
        return str(e)
    except Exception as e:          # the shell outlives any bug below it
        return f"internal error: {type(e).__name__}: {e} (a bug in the lab; the session goes on)"


def interactive(session: Session) -> int:  # pragma: no cover - needs a terminal
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import WordCompleter
    from prompt_toolkit.history import InMemoryHistory

    prompt = PromptSession(history=InMemoryHistory(),
                           completer=WordCompleter(sorted(n for n, c in REGISTRY.items() if not c.screen) + ["quit"],
                                                    sentence=True))
    print("xenlab shell: 'help' lists the commands, 'quit' leaves")
    while True:
        try:
            line = prompt.prompt("xen> ")
        except (EOFError, KeyboardInterrupt):
            return 0
        if line.strip() in ("quit", "exit"):
            return 0
        text = answer(session, line)
        if text:
            print(text)
