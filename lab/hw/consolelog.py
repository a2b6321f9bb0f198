"""A console's output as a bounded ring: the newest text a guest wrote, never more.

A guest decides how much it prints, so the log of what it printed is bounded
as xenconsoled bounds its per-domain buffer: libxl writes ``console/limit`` =
``LIBXL_XENCONSOLE_LIMIT`` (1048576 bytes) beside each console
(tools/libs/light/libxl_internal.h, libxl_console.c) and
tools/console/daemon/io.c ``buffer_append()`` discards what goes past it.

Appends cost O(1) amortised: text is kept as a list of pieces, joined when
read, and trimmed from the front a fixed block at a time. Blocks are cut at
fixed offsets of the whole output (multiples of ``block``), so what is kept
depends only on the text written, never on how it was split into writes:
``dropped`` is the smallest multiple of ``block`` that leaves at most
``limit`` characters kept. What was dropped is still covered by a chained
SHA-256 (``dropped_hash``), so a digest of the log (:meth:`digest_form`)
tells two different outputs apart however long they are.
"""

from __future__ import annotations

import hashlib

#: tools/libs/light/libxl_internal.h: LIBXL_XENCONSOLE_LIMIT, the ``console/limit`` libxl gives
#: xenconsoled for every console it creates.
XENCONSOLE_LIMIT = 1048576

#: Pieces collected before they are joined into one block (bounds the list of small writes).
_PIECES = 512


class ConsoleLog:
    """The newest ``limit`` characters (at most) of a console's output, and a count and
    hash of everything before them."""

    def __init__(self, limit: int = XENCONSOLE_LIMIT) -> None:
        if limit < 16:
            raise ValueError("a console log keeps at least 16 characters")
        self.limit = limit
        self.block = limit // 16      # what one trim drops: each byte is copied at most 16 times
        self._blocks: list[str] = []  # joined pieces, oldest first
        self._pieces: list[str] = []  # writes since the last join
        self._held = 0                # characters in _blocks and _pieces
        self.dropped = 0              # characters discarded from the front (a multiple of block)
        self.dropped_hash = b""       # sha256 chained over the dropped blocks, in order

    # -- writing -----------------------------------------------------------------------
    def append(self, text: str) -> None:
        n = len(text)
        if not n:
            return
        self._pieces.append(text)
        self._held += n
        if len(self._pieces) >= _PIECES:
            self._blocks.append("".join(self._pieces))
            self._pieces.clear()
        if self._held > self.limit:
            self._trim()

    def _trim(self) -> None:
        text = self.text
        blocks = -(-(len(text) - self.limit) // self.block)
        h = self.dropped_hash
        for i in range(blocks):
            h = hashlib.sha256(h + text[i * self.block:(i + 1) * self.block].encode("utf-8", "surrogatepass")).digest()
        self.dropped_hash = h
        self.dropped += blocks * self.block
        kept = text[blocks * self.block:]
        self._blocks = [kept] if kept else []
        self._held = len(kept)

    # -- reading -----------------------------------------------------------------------
    @property
    def text(self) -> str:
        """What is kept: all the output while it fits, then its newest part."""
        if self._pieces:
            self._blocks.append("".join(self._pieces))
            self._pieces.clear()
        if len(self._blocks) > 1:
            self._blocks = ["".join(self._blocks)]
        return self._blocks[0] if self._blocks else ""

    @property
    def total(self) -> int:
        """Characters ever written."""
        return self.dropped + self._held

    def __len__(self) -> int:
        return self._held

    def __repr__(self) -> str:
        return f"ConsoleLog(total={self.total}, kept={self._held}, limit={self.limit})"

    def digest_form(self) -> str | tuple[int, str, str]:
        """What a machine digest hashes: the text itself while nothing was dropped (so a
        digest is what it was before the log had a bound), else the count dropped, the
        hash of what was dropped and the text kept."""
        if not self.dropped:
            return self.text
        return (self.dropped, self.dropped_hash.hex(), self.text)

    # -- snapshots ---------------------------------------------------------------------
    def save_state(self) -> tuple[int, int, bytes, str]:
        return (self.limit, self.dropped, self.dropped_hash, self.text)

    def load_state(self, state: tuple[int, int, bytes, str]) -> None:
        limit, dropped, dropped_hash, text = state
        self.limit, self.block = limit, limit // 16
        self.dropped, self.dropped_hash = dropped, dropped_hash
        self._blocks = [text] if text else []
        self._pieces = []
        self._held = len(text)
