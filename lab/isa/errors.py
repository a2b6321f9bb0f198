"""The assembler's error, in a module of its own: the lab catches it on every start, while
the assembler itself loads only when an image is not in the cache (lab/isa/cache.py)."""

from __future__ import annotations

from ..errors import UserError


class AsmError(UserError):
    """A mistake in assembly source; ``str()`` is ``file:line:col: message``."""

    def __init__(self, file: str, line: int, col: int, message: str) -> None:
        super().__init__(f"{file}:{line}:{col}: {message}")
        self.file = file
        self.line = line
        self.col = col
        self.message = message
