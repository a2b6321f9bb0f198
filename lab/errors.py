"""The one exception type a learner ever sees: bad input, clearly named."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the learner: a file, a command, an option.

    ``str()`` is a single line such as ``machines/foo.s:12:7: unknown
    register 'rxx'``; the command line prints it and exits with status 2,
    the TUI shows it as a message. Never a traceback.
    """


class LabBug(UserError):
    """A command failed because of a bug in the lab, not the learner's input.

    It is shown like a UserError (one line, no traceback) so the screen and the
    shell go on; the command line exits with status 1 for it, as for any
    internal error.
    """
