"""A translation lookaside buffer that behaves like x86's.

The TLB caches the result of page walks: linear page to physical frame plus
the permissions the walk found. It is *not* kept coherent with the page
tables: after software changes an entry, the old translation stays cached
until ``invlpg`` drops it or a CR3 write flushes the TLB. That staleness is
real x86 behaviour, and why kernels (and Xen, on a PV guest's behalf) must
flush after changing a mapping.

* ``invlpg va`` drops every entry covering ``va``, global or not.
* A CR3 write drops every entry except global ones (``flush()``).
* Turning CR4.PGE off, or any other CR4 paging change, drops everything
  (``flush(include_global=True)``).

A large page is one entry covering its whole range, so one walk serves every
4 KiB page inside it. Each page size has its own set of entries (as real TLBs
keep separate arrays per size), bounded in size and replaced first in, first
out: deterministic, unlike real hardware's pseudo-LRU.

Under EPT the frame cached here is the one the guest's page tables give
(guest-physical); the second stage is applied after the lookup.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

from .snapshot import Plain

PAGE_SHIFT = 12
SIZES = (1 << 12, 1 << 21, 1 << 30)
_SHIFT = {1 << 12: 12, 1 << 21: 21, 1 << 30: 30}


@dataclass(frozen=True, slots=True)
class TlbEntry:
    vpn: int            # virtual page number (va >> 12) of the first 4 KiB page covered
    pfn: int            # frame number (pa >> 12) of the first frame of the page
    page_size: int      # 4096, 2 MiB or 1 GiB
    writable: bool      # RW at every level of the walk
    user: bool          # US at every level
    nx: bool            # NX at some level
    global_: bool       # G in the leaf
    dirty: bool         # D was set in the leaf when this was cached

    @property
    def va(self) -> int:
        return self.vpn << PAGE_SHIFT

    @property
    def pa(self) -> int:
        return self.pfn << PAGE_SHIFT

    def covers(self, va: int) -> bool:
        return self.va <= va < self.va + self.page_size

    def translate(self, va: int) -> int:
        """The physical address of ``va`` through this entry."""
        return (self.pfn << PAGE_SHIFT) | (va & (self.page_size - 1))

    def allows(self, access: str, cpl: int, *, wp: bool = True, nxe: bool = True) -> bool:
        """Whether the access may use this entry without a fresh walk.

        A write through an entry cached while D was clear needs a walk, as on
        real hardware, so that the walk can set D.
        """
        user_mode = cpl == 3
        if user_mode and not self.user:
            return False
        if access == "w":
            if not self.dirty:
                return False
            if not self.writable and (user_mode or wp):
                return False
        if access == "x" and nxe and self.nx:
            return False
        return True

    def describe(self) -> str:
        size = {1 << 12: "4K", 1 << 21: "2M", 1 << 30: "1G"}.get(self.page_size, hex(self.page_size))
        bits = [("RW" if self.writable else "RO"), ("U" if self.user else "S")]
        if self.nx:
            bits.append("NX")
        if self.global_:
            bits.append("G")
        if self.dirty:
            bits.append("D")
        return f"{self.va:#x} -> {self.pa:#x} {size} {' '.join(bits)}"


class Tlb:
    """Per-CPU TLB: one FIFO-replaced set of entries per page size."""

    def __init__(self, capacity: int = 64) -> None:
        if capacity < 1:
            raise ValueError("TLB capacity must be at least 1")
        self.capacity = capacity
        # page size -> {va >> shift: entry}, in insertion order (FIFO).
        self._sets: dict[int, dict[int, TlbEntry]] = {size: {} for size in SIZES}
        self.stats: dict[str, int] = {"hits": 0, "misses": 0, "inserts": 0, "evictions": 0,
                                      "flushes": 0, "invlpgs": 0}

    # -- lookups ----------------------------------------------------------
    def probe(self, va: int) -> TlbEntry | None:
        """The entry covering ``va``, without counting a hit or miss (for display)."""
        sets = self._sets
        e = sets[1 << 12].get(va >> 12)
        if e is None:
            e = sets[1 << 21].get(va >> 21)
            if e is None:
                e = sets[1 << 30].get(va >> 30)
        return e

    def lookup(self, va: int) -> TlbEntry | None:
        """The entry covering ``va``; counts a hit or a miss."""
        e = self.probe(va)
        if e is None:
            self.stats["misses"] += 1
        else:
            self.stats["hits"] += 1
        return e

    # -- filling ------------------------------------------------------------
    def insert(self, va: int, walk_result) -> TlbEntry | None:
        """Cache a successful walk (a faulting walk caches nothing)."""
        r = walk_result
        if r.pa is None or getattr(r, "fault", None) is not None or getattr(r, "ept_exit", None) is not None:
            return None
        size = r.page_size
        shift = _SHIFT.get(size)
        if shift is None:
            raise ValueError(f"unsupported page size {size:#x}")
        base_va = va & ~(size - 1)
        base_pa = r.pa & ~(size - 1)
        dirty = bool(getattr(r, "dirty", False))
        entry = TlbEntry(base_va >> PAGE_SHIFT, base_pa >> PAGE_SHIFT, size, bool(r.writable),
                         bool(r.user), bool(r.nx), bool(r.global_), bool(dirty))
        self.put(entry)
        return entry

    def put(self, entry: TlbEntry) -> None:
        """Insert an entry directly (newest last; the oldest is evicted when full)."""
        shift = _SHIFT[entry.page_size]
        s = self._sets[entry.page_size]
        key = entry.vpn >> (shift - PAGE_SHIFT)
        if key in s:
            del s[key]
        elif len(s) >= self.capacity:
            del s[next(iter(s))]
            self.stats["evictions"] += 1
        s[key] = entry
        self.stats["inserts"] += 1

    # -- invalidation ---------------------------------------------------------
    def invlpg(self, va: int) -> int:
        """Drop every entry covering ``va``, global or not. Returns how many."""
        self.stats["invlpgs"] += 1
        n = 0
        for size in SIZES:
            key = va >> _SHIFT[size]
            s = self._sets[size]
            if key in s:
                del s[key]
                n += 1
        return n

    def flush(self, include_global: bool = False) -> int:
        """A CR3 write (non-global entries) or a full flush. Returns how many dropped."""
        self.stats["flushes"] += 1
        n = 0
        for size in SIZES:
            s = self._sets[size]
            if include_global:
                n += len(s)
                s.clear()
            else:
                keep = {k: e for k, e in s.items() if e.global_}
                n += len(s) - len(keep)
                self._sets[size] = keep
        return n

    # -- display and state ------------------------------------------------------
    def entries(self) -> list[TlbEntry]:
        """Every cached entry, sorted by virtual page number (then size)."""
        out = [e for size in SIZES for e in self._sets[size].values()]
        out.sort(key=lambda e: (e.vpn, e.page_size))
        return out

    def __len__(self) -> int:
        return sum(len(s) for s in self._sets.values())

    def snapshot(self) -> dict:
        """Plain data (lists, ints, bools) that :meth:`restore` takes back."""
        return {
            "capacity": self.capacity,
            "sets": [[size, [list(astuple(e)) for e in self._sets[size].values()]] for size in SIZES],
            "stats": dict(self.stats),
        }

    def save_state(self) -> Plain:
        # Entries are frozen: the saved sets share them.
        return Plain((self.capacity, {size: dict(s) for size, s in self._sets.items()}, dict(self.stats)))

    def load_state(self, state: tuple) -> None:
        self.capacity, sets, stats = state
        self._sets = {size: dict(s) for size, s in sets.items()}
        self.stats = dict(stats)

    def restore(self, snap: dict) -> None:
        self.capacity = snap.get("capacity", self.capacity)
        self._sets = {size: {} for size in SIZES}
        for size, rows in snap["sets"]:
            s = self._sets[size]
            shift = _SHIFT[size]
            for row in rows:
                e = TlbEntry(*row)
                s[e.vpn >> (shift - PAGE_SHIFT)] = e
        self.stats = dict(snap["stats"])
