"""Building Arm translation tables (4 KiB granule) in machine memory.

What a loader writes for a kernel's first stage-1 tables, and what Xen
writes for a guest's stage-2 tables (``xen/arch/arm/mmu/p2m.c``): tables are
allocated from frames the caller hands out, and each ``map`` makes the
missing intermediate tables on the way down.
"""

from __future__ import annotations

from typing import Callable

from ..memory import MachineMemory
from .mmu import AF, AP_EL0, AP_RO, OA_MASK, PXN, S2_READ, S2_WRITE, UXN

#: Stage-1 attributes: normal memory (AttrIndx 0), inner shareable.
S1_NORMAL = AF | (3 << 8)
#: Stage-2 attributes: normal write-back memory (MemAttr 0b1111), inner shareable.
S2_NORMAL = AF | (0xF << 2) | (3 << 8)


def stage1_attrs(*, el0: bool = False, writable: bool = True, exec_el1: bool = True, exec_el0: bool = False) -> int:
    bits = S1_NORMAL | (AP_EL0 if el0 else 0) | (0 if writable else AP_RO)
    if not exec_el1:
        bits |= PXN
    if not exec_el0:
        bits |= UXN
    return bits


def stage2_attrs(*, read: bool = True, write: bool = True, execute: bool = True) -> int:
    return S2_NORMAL | (S2_READ if read else 0) | (S2_WRITE if write else 0) | (0 if execute else UXN)


class TableBuilder:
    """One set of tables rooted at a fresh frame, with ``levels`` levels above the page (4 = L0-L3)."""

    def __init__(self, mem: MachineMemory, alloc: Callable[[], int], start_level: int = 0) -> None:
        self.mem = mem
        self.alloc = alloc             # returns the machine address of a zeroed 4 KiB frame
        self.start_level = start_level
        self.root = alloc()
        self.tables = [self.root]

    def map(self, va: int, pa: int, attrs: int, *, to_table: Callable[[int], int] | None = None) -> None:
        """Map the 4 KiB page at ``va`` to ``pa``. ``to_table`` turns a table's address into where it is
        in machine memory (identity unless the tables themselves live behind a stage 2)."""
        locate = to_table or (lambda a: a)
        table = self.root
        for level in range(self.start_level, 3):
            index = (va >> (12 + 9 * (3 - level))) & 0x1FF
            slot = locate(table) + index * 8
            entry = self.mem.read_u64(slot)
            if entry & 3 != 3:
                new = self.alloc()
                self.tables.append(new)
                entry = new | 3
                self.mem.write_u64(slot, entry)
            table = entry & OA_MASK
        index = (va >> 12) & 0x1FF
        self.mem.write_u64(locate(table) + index * 8, (pa & OA_MASK) | attrs | 3)

    def unmap(self, va: int, *, to_table: Callable[[int], int] | None = None) -> None:
        self.map(va, 0, 0, to_table=to_table)
        locate = to_table or (lambda a: a)
        table = self.root
        for level in range(self.start_level, 3):
            table = self.mem.read_u64(locate(table) + ((va >> (12 + 9 * (3 - level))) & 0x1FF) * 8) & OA_MASK
        self.mem.write_u64(locate(table) + ((va >> 12) & 0x1FF) * 8, 0)


def bump_allocator(mem: MachineMemory, start: int) -> Callable[[], int]:
    """Frames from ``start`` upward, zeroed."""
    nxt = [start]

    def alloc() -> int:
        addr = nxt[0]
        nxt[0] += 4096
        mem.zero_frame(addr >> 12)
        return addr
    return alloc
