"""The one exception type a learner ever sees: bad input, clearly named."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the learner: a file, a command, an option.

    ``str()`` is a single line such as ``machines/foo.s:12:7: unknown
    register 'rxx'``; the command line prints it and exits with status 2,
    the TUI shows it as a message. Never a traceback.
    """


class LabBug(UserError):
    """A bug in the lab met while doing what the learner asked.

    Shown like a UserError, as one line that says what failed and what to do
    next; the session goes on. The command line exits with status 1 for it
    (the input was not at fault), not 2.
    """
