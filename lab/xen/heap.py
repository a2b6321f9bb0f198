"""Xen's heap of free machine frames, kept as a range and a stack so a host of many GiB
costs nothing until its frames are handed out.

Frames never handed out are the range ``[next_fresh, end)``, given in ascending order;
a freed frame goes on a stack and is handed out again first (last freed, first reused).
Iterating gives the frames in the order a list would hold them with ``pop()`` taking
from its end: the untouched range from the top down, then the stack.
"""

from __future__ import annotations

from typing import Iterator


class FreeFrames:
    def __init__(self, start: int, end: int) -> None:
        self.next_fresh = start
        self.end = end
        self.stack: list[int] = []

    def __len__(self) -> int:
        return (self.end - self.next_fresh) + len(self.stack)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __contains__(self, mfn: object) -> bool:
        return (isinstance(mfn, int) and self.next_fresh <= mfn < self.end) or mfn in self.stack

    def __iter__(self) -> Iterator[int]:
        yield from range(self.end - 1, self.next_fresh - 1, -1)
        yield from self.stack

    def append(self, mfn: int) -> None:
        """A frame comes back to the heap."""
        self.stack.append(mfn)

    def pop(self) -> int:
        if self.stack:
            return self.stack.pop()
        if self.next_fresh >= self.end:
            raise IndexError("pop from an empty heap")
        mfn = self.next_fresh
        self.next_fresh += 1
        return mfn

    def take_block(self, order: int) -> int | None:
        """2**order contiguous frames aligned to their size, as Xen's buddy allocator hands out
        an extent (alloc_heap_pages(), common/page_alloc.c); the first frame, or None.

        The block comes from the part of the heap never handed out; the frames skipped to
        align it stay free (they go on the stack, to be handed out first, lowest first).
        """
        n = 1 << order
        base = (self.next_fresh + n - 1) & ~(n - 1)
        if base + n > self.end:
            return None
        self.stack.extend(range(base - 1, self.next_fresh - 1, -1))
        self.next_fresh = base + n
        return base

    def take(self, n: int) -> list[int]:
        """``n`` frames in the order ``n`` pops would give them."""
        if n > len(self):
            raise IndexError(f"{n} frames wanted, {len(self)} free")
        k = min(n, len(self.stack))
        out = self.stack[:-k - 1:-1] if k else []
        del self.stack[len(self.stack) - k:]
        rest = n - k
        out.extend(range(self.next_fresh, self.next_fresh + rest))
        self.next_fresh += rest
        return out
