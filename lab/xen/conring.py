"""Xen's console ring (the conring): the fixed-size ring of bytes ``xl dmesg`` reads.

Xen keeps its own log in a ring of ``conring_size`` bytes
(xen/drivers/char/console.c). ``conring_puts()`` copies every byte of a
line, its newline included, to ``conring[conringp++ & (size - 1)]``, and
once more than ``size`` bytes are unread it moves the reader's start,
``conringc``, to ``conringp - size``: the oldest bytes are overwritten, so
the oldest line left may have lost its head. ``read_console_ring()``
(``XEN_SYSCTL_readconsole``, which ``xl dmesg`` calls through
``xc_readconsolering()``) copies the bytes from ``conringc`` to
``conringp``; with ``clear`` set (``xl dmesg -c``) it then moves
``conringc`` up to what it read, so the ring reads empty until Xen logs
again.

The lab keeps the same bytes as lines: ``_cut`` says how many bytes of the
oldest line are overwritten, and a reader sees that line from there, as
Xen's reader does (only its tail; an empty line when only its newline is
left). A line's size is its length plus the newline: the lab's text is one
byte per character (Xen's messages are ASCII, a guest's bytes are read as
Latin-1).

``logged`` counts the lines ever written; it never goes back (not on wrap,
not on clear), so the host's digest, which hashes it, does not depend on
the ring's size.
"""

from __future__ import annotations

from collections import deque
from typing import Iterator, overload

from ..hw.memory import PAGE_SIZE
from ..hw.snapshot import Plain

#: console.c: _CONRING_SIZE, the static ring Xen logs into until it allocates the real one.
BOOT_CONRING_SIZE = 16384
#: console.c: XENLOG_LOWER_THRESHOLD of a debug build (4, "print everything"); a release build has 3.
DEBUG_XENLOG_LOWER_THRESHOLD = 4


def get_order_from_bytes(size: int) -> int:
    """xen/include/xen/mm.h: the smallest order of pages that holds ``size`` bytes."""
    order, pages = 0, (size + PAGE_SIZE - 1) // PAGE_SIZE
    while (1 << order) < pages:
        order += 1
    return order


def conring_size(pcpus: int, opt_conring_size: int = 0,
                 lower_thresh: int = DEBUG_XENLOG_LOWER_THRESHOLD) -> int:
    """The ring's size in bytes, as Xen chooses it at boot.

    console_init_postirq(): without ``conring_size=``, ``num_present_cpus() << (9 +
    xenlog_lower_thresh)`` (8 KiB per CPU in a debug build, 4 KiB in a release build);
    console_init_ring(): never less than the boot ring, rounded up to a power-of-two number
    of pages (``PAGE_SIZE << get_order_from_bytes(max(opt_conring_size, conring_size))``).
    """
    want = opt_conring_size or pcpus << (9 + lower_thresh)
    return PAGE_SIZE << get_order_from_bytes(max(want, BOOT_CONRING_SIZE))


class ConsoleRing:
    """Xen's console ring: lines in, the newest ``size`` bytes kept, read as Xen's reader reads."""

    def __init__(self, size: int = BOOT_CONRING_SIZE) -> None:
        self.size = size
        self._lines: deque[str] = deque()       # the lines with bytes left in the ring, oldest first
        self._cut = 0                           # bytes of the oldest line already overwritten
        self.used = 0                           # bytes a reader gets: conringp - conringc
        self.logged = 0                         # lines ever written
        self.written = 0                        # bytes ever written: conringp

    # -- writing (conring_puts) -----------------------------------------------------------
    def append(self, line: str) -> None:
        """Log one line (without its newline)."""
        n = len(line) + 1
        self._lines.append(line)
        self.logged += 1
        self.written += n
        self.used += n
        over = self.used - self.size
        while over > 0:                         # conringc = conringp - conring_size
            left = len(self._lines[0]) + 1 - self._cut
            if over >= left:
                self._lines.popleft()
                self._cut = 0
                self.used -= left
                over -= left
            else:
                self._cut += over
                self.used -= over
                over = 0

    # -- reading (read_console_ring) --------------------------------------------------------
    def lines(self) -> list[str]:
        """What a reader gets, line by line (the oldest one from its first byte left)."""
        out = list(self._lines)
        if out and self._cut:
            out[0] = out[0][self._cut:]
        return out

    def read(self, clear: bool = False) -> list[str]:
        """What ``xl dmesg`` reads (``-c``: ``clear``): the ring's lines; clearing then moves
        the reader's start to the end, so the next read shows only what is logged after it."""
        out = self.lines()
        if clear:
            self._lines.clear()
            self._cut = 0
            self.used = 0
        return out

    def since(self, mark: int) -> list[str]:
        """The lines logged after ``logged`` was ``mark`` that the ring still holds."""
        held = self.lines()
        k = min(self.logged - mark, len(held))
        return held[len(held) - k:] if k > 0 else []

    def __len__(self) -> int:
        return len(self._lines)

    def __iter__(self) -> Iterator[str]:
        return iter(self.lines())

    def __contains__(self, line: object) -> bool:
        return line in self.lines()

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        return self.lines()[i]

    def __repr__(self) -> str:
        return f"<ConsoleRing {self.used}/{self.size} bytes, {self.logged} lines logged>"

    # -- snapshots ---------------------------------------------------------------------------
    def save_state(self) -> Plain:
        return Plain((self.size, tuple(self._lines), self._cut, self.used, self.logged, self.written))

    def load_state(self, state: tuple) -> None:
        self.size, lines, self._cut, self.used, self.logged, self.written = state
        self._lines = deque(lines)
