"""Building page tables and EPT tables in machine memory.

Used by the native loader, Xen's domain builder and the tests. Tables are
written straight into memory with ``write_u64``, as a kernel or Xen would;
nothing here flushes a TLB.

Frames come from an *allocator*: any callable ``alloc() -> mfn`` that returns
the number of a zeroed frame. :class:`FrameAllocator` is a simple one.
Every building function returns the list of table frames it created, in the
order it created them, so a caller can, for example, give them Xen's page-
table type or mark them read-only.
"""

from __future__ import annotations

import struct

from typing import Callable, Protocol

from . import ept as E
from . import paging as P
from .memory import PAGE_SHIFT, PAGE_SIZE

Alloc = Callable[[], int]

#: Intermediate guest entries: present, writable, user, so the leaf decides.
TABLE_FLAGS = P._PAGE_PRESENT | P._PAGE_RW | P._PAGE_USER
#: Intermediate EPT entries: read, write, execute, so the leaf decides.
EPT_TABLE_FLAGS = E.EPT_R | E.EPT_W | E.EPT_X

_LEAF_LEVEL = {P.PAGE_4K: 1, P.PAGE_2M: 2, P.PAGE_1G: 3}


class FrameAllocatorProtocol(Protocol):
    def __call__(self) -> int: ...


class FrameAllocator:
    """Hands out frames ``first, first+1, ...`` up to ``limit`` (exclusive), zeroed."""

    def __init__(self, mem, first: int, limit: int | None = None) -> None:
        self.mem = mem
        self.next = first
        self.limit = mem.nr_frames if limit is None else limit
        self.allocated: list[int] = []

    def __call__(self) -> int:
        if self.next >= self.limit:
            raise MemoryError(f"no free frames below {self.limit:#x}")
        mfn = self.next
        self.next += 1
        self.mem.zero_frame(mfn)
        self.allocated.append(mfn)
        return mfn


def _check_size(page_size: int) -> int:
    level = _LEAF_LEVEL.get(page_size)
    if level is None:
        raise ValueError(f"page size must be 4 KiB, 2 MiB or 1 GiB, not {page_size:#x}")
    return level


def _descend(mem, alloc: Alloc, root: int, addr: int, leaf_level: int, table_flags: int,
             present_mask: int, is_large, created: list[int]) -> int:
    """Walk from ``root`` down to the table holding ``addr``'s ``leaf_level`` entry,
    creating missing tables. Returns that table's address."""
    table = root & P.PADDR_MASK
    for level in range(4, leaf_level, -1):
        slot = table + ((addr >> P.LEVEL_SHIFT[level]) & 511) * 8
        entry = mem.read_u64(slot)
        if not entry & present_mask:
            mfn = alloc()
            created.append(mfn)
            entry = (mfn << PAGE_SHIFT) | table_flags
            mem.write_u64(slot, entry)
        elif is_large(entry, level):
            raise ValueError(f"{addr:#x} is already inside a large page mapped at L{level}")
        table = entry & P.PADDR_MASK
    return table


# -- x86-64 page tables ---------------------------------------------------------------
def map_page(mem, alloc: Alloc, cr3_or_root: int, va: int, pa: int, *, rw: bool = True,
             user: bool = False, nx: bool = False, global_: bool = False,
             page_size: int = PAGE_SIZE, accessed: bool = False, dirty: bool = False) -> list[int]:
    """Map ``va`` to ``pa`` in the 4-level tables at ``cr3_or_root``.

    Missing intermediate tables are allocated with P|RW|US entries, so the
    leaf alone decides the permissions. An existing leaf is replaced.
    Returns the frames of the tables created.
    """
    leaf_level = _check_size(page_size)
    if not P.is_canonical(va):
        raise ValueError(f"{va:#x} is not a canonical address")
    if va & (page_size - 1) or pa & (page_size - 1):
        raise ValueError(f"va {va:#x} and pa {pa:#x} must be aligned to the page size {page_size:#x}")
    if pa & ~P.PADDR_MASK & ~(page_size - 1):
        raise ValueError(f"pa {pa:#x} is beyond the physical-address width")
    created: list[int] = []
    table = _descend(mem, alloc, cr3_or_root, va, leaf_level, TABLE_FLAGS, P._PAGE_PRESENT,
                     lambda e, lvl: lvl in (2, 3) and bool(e & P._PAGE_PSE), created)
    entry = pa | P._PAGE_PRESENT
    if rw:
        entry |= P._PAGE_RW
    if user:
        entry |= P._PAGE_USER
    if accessed:
        entry |= P._PAGE_ACCESSED
    if dirty:
        entry |= P._PAGE_DIRTY
    if global_:
        entry |= P._PAGE_GLOBAL
    if nx:
        entry |= P._PAGE_NX
    if leaf_level > 1:
        entry |= P._PAGE_PSE
    mem.write_u64(table + ((va >> P.LEVEL_SHIFT[leaf_level]) & 511) * 8, entry)
    return created


def find_leaf(mem, cr3_or_root: int, va: int) -> tuple[int, int, int] | None:
    """(entry address, entry, level) of the present leaf mapping ``va``, or None."""
    table = cr3_or_root & P.PADDR_MASK
    for level in (4, 3, 2, 1):
        slot = table + ((va >> P.LEVEL_SHIFT[level]) & 511) * 8
        entry = mem.read_u64(slot)
        if not entry & P._PAGE_PRESENT:
            return None
        if level == 1 or (level in (2, 3) and entry & P._PAGE_PSE):
            return slot, entry, level
        table = entry & P.PADDR_MASK
    return None


def unmap_page(mem, cr3_or_root: int, va: int) -> int:
    """Clear the leaf entry that maps ``va`` (of whatever size).

    Returns the old entry (0 if nothing was mapped). Tables are not freed and
    no TLB is flushed: that is the caller's job, as on real hardware.
    """
    found = find_leaf(mem, cr3_or_root, va)
    if found is None:
        return 0
    slot, entry, _level = found
    mem.write_u64(slot, 0)
    return entry


# -- EPT -----------------------------------------------------------------------------------
def ept_map(mem, alloc: Alloc, pml4: int, gpa: int, hpa: int, perms: str = "rwx",
            mtype: int = E.MT_WB, page_size: int = PAGE_SIZE, *, ipat: bool = False) -> list[int]:
    """Map guest-physical ``gpa`` to host-physical ``hpa`` in the EPT at ``pml4``.

    ``pml4`` may be the table's address or an EPTP (its low attribute bits are
    ignored). ``perms`` is any of ``"r"``, ``"w"``, ``"x"`` (``""`` writes a
    not-present entry, as Xen does for a p2m hole). Missing tables are allocated
    with R|W|X entries. Returns the frames of the tables created.
    """
    leaf_level = _check_size(page_size)
    if gpa & (page_size - 1) or hpa & (page_size - 1):
        raise ValueError(f"gpa {gpa:#x} and hpa {hpa:#x} must be aligned to the page size {page_size:#x}")
    bad = set(perms) - set("rwx")
    if bad:
        raise ValueError(f"perms may hold only r, w, x, not {''.join(sorted(bad))!r}")
    created: list[int] = []
    table = _descend(mem, alloc, pml4, gpa, leaf_level, EPT_TABLE_FLAGS, E.EPT_RWX,
                     lambda e, lvl: lvl in (2, 3) and bool(e & E.EPT_PS), created)
    entry = hpa | ((mtype & 7) << E.EPT_MT_SHIFT)
    if "r" in perms:
        entry |= E.EPT_R
    if "w" in perms:
        entry |= E.EPT_W
    if "x" in perms:
        entry |= E.EPT_X
    if ipat:
        entry |= E.EPT_IGNORE_PAT
    if leaf_level > 1:
        entry |= E.EPT_PS
    mem.write_u64(table + ((gpa >> P.LEVEL_SHIFT[leaf_level]) & 511) * 8, entry)
    return created


def ept_map_pages(mem, alloc: Alloc, pml4: int, mfns, perms: str = "rwx", mtype: int = E.MT_WB) -> list[int]:
    """Map gfn i to ``mfns[i]`` for every i, with 4 KiB leaves: what one ``ept_map`` per page
    does, but each leaf table is walked to once and written in one piece (a guest of
    several GiB has a million pages). Returns the frames of the tables created."""
    bits = (mtype & 7) << E.EPT_MT_SHIFT
    bits |= (E.EPT_R if "r" in perms else 0) | (E.EPT_W if "w" in perms else 0) | (E.EPT_X if "x" in perms else 0)
    created: list[int] = []
    n = len(mfns)
    for first in range(0, n, 512):
        block = mfns[first:first + 512]
        table = _descend(mem, alloc, pml4, first << PAGE_SHIFT, 1, EPT_TABLE_FLAGS, E.EPT_RWX,
                         lambda e, lvl: lvl in (2, 3) and bool(e & E.EPT_PS), created)
        mem.write(table, struct.pack(f"<{len(block)}Q", *[(mfn << PAGE_SHIFT) | bits for mfn in block]))
    return created


def ept_find_leaf(mem, pml4: int, gpa: int) -> tuple[int, int, int] | None:
    """(entry address, entry, level) of the present EPT leaf for ``gpa``, or None."""
    table = pml4 & E.EPT_ADDR_MASK
    for level in (4, 3, 2, 1):
        slot = table + ((gpa >> P.LEVEL_SHIFT[level]) & 511) * 8
        entry = mem.read_u64(slot)
        if not entry & E.EPT_RWX:
            return None
        if level == 1 or (level in (2, 3) and entry & E.EPT_PS):
            return slot, entry, level
        table = entry & E.EPT_ADDR_MASK
    return None


def ept_set_perms(mem, pml4: int, gpa: int, perms: str) -> int:
    """Change the permissions of the EPT leaf for ``gpa`` (e.g. log-dirty's read-only).

    Returns the old entry (0 if nothing was mapped, and nothing is written).
    """
    found = ept_find_leaf(mem, pml4, gpa)
    if found is None:
        return 0
    slot, entry, _level = found
    new = entry & ~E.EPT_RWX
    new |= (E.EPT_R if "r" in perms else 0) | (E.EPT_W if "w" in perms else 0) | \
        (E.EPT_X if "x" in perms else 0)
    mem.write_u64(slot, new)
    return entry


def ept_unmap(mem, pml4: int, gpa: int) -> int:
    """Clear the EPT leaf for ``gpa``. Returns the old entry (0 if none)."""
    found = ept_find_leaf(mem, pml4, gpa)
    if found is None:
        return 0
    slot, entry, _level = found
    mem.write_u64(slot, 0)
    return entry
