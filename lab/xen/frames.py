"""The one way Xen and dom0's services touch a guest's frame: while holding references on it.

Xen never writes a guest page by its frame number alone. It takes a general
reference (``get_page``: the frame cannot be freed and handed to another
domain while it is held) and, to write, a writable type reference
(``get_page_type(PGT_writable_page)``: the frame cannot be a page table, a
descriptor table or Xen's own while it is held, and cannot become one), and
drops them when done (``put_page_and_type``). Grant mappings and foreign
mappings by dom0 hold theirs for as long as the mapping lives
(``xen/arch/x86/mm.c``, ``xen/common/grant_table.c``).

:class:`FrameAccess` is that rule for the lab. Every path that reads or writes
guest memory on the host's behalf gets a :class:`HeldFrame` from here: grant
map and copy, blkback and netback (through their grant mappings), xenstored
and xenconsoled (their ring pages, mapped as ``xc_map_foreign_range`` does),
Xen's own copies. A frame whose owner turned it into a page table refuses a
writable hold (-EBUSY); a frame that is held outlives its owner's wish to give
it back, and is freed, wiped, only when the last holder lets go.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..hw.memory import PAGE_SHIFT, PAGE_SIZE
from . import abi

from .abi.errno import EBUSY, EINVAL


class FrameReleased(Exception):
    """A service used a frame after letting it go: a bug in the lab, never a guest's doing."""


@dataclass(eq=False)
class HeldFrame:
    """One machine frame of ``owner``, held by ``holder`` (a name for the io view and errors)."""
    access: "FrameAccess"
    mfn: int
    owner: int
    writable: bool
    holder: str
    live: bool = field(default=True)

    @property
    def maddr(self) -> int:
        return self.mfn << PAGE_SHIFT

    def _check(self, off: int, n: int) -> None:
        if not self.live:
            raise FrameReleased(f"{self.holder}: mfn {self.mfn:#x} used after release")
        if off < 0 or n < 0 or off + n > PAGE_SIZE:
            raise ValueError(f"{self.holder}: bytes {off}..{off + n} are outside the page")

    def read(self, off: int, n: int) -> bytes:
        self._check(off, n)
        return self.access.host.mem.read(self.maddr + off, n)

    def write(self, off: int, data: bytes) -> None:
        self._check(off, len(data))
        if not self.writable:
            raise FrameReleased(f"{self.holder}: mfn {self.mfn:#x} is held read-only")
        self.access.host.mem.write(self.maddr + off, data)

    def read_u32(self, off: int) -> int:
        return int.from_bytes(self.read(off, 4), "little")

    def write_u32(self, off: int, value: int) -> None:
        self.write(off, (value & 0xFFFF_FFFF).to_bytes(4, "little"))

    def release(self) -> None:
        """put_page_and_type(): idempotent, so teardown paths may call it more than once."""
        if self.live:
            self.live = False
            self.access._release(self)


class FrameAccess:
    """Holds and releases references on guest frames for Xen and dom0's services."""

    def __init__(self, host) -> None:
        self.host = host
        self._held: list[HeldFrame] = []

    def hold(self, owner: int, mfn: int, *, writable: bool, holder: str) -> HeldFrame | int:
        """get_page (and get_page_type(PGT_writable_page) to write) on ``owner``'s ``mfn``.

        Returns the held frame, -EINVAL when the frame is not ``owner``'s (or
        not RAM), -EBUSY when it cannot be writable (a page table, a
        descriptor table, a frame of Xen's).
        """
        pv = self.host.mm.pv
        if not pv.valid(mfn) or not pv.get_page(mfn, owner):
            return -EINVAL
        if writable and pv.get_page_type(mfn, abi.PGT_writable_page, owner) != 0:
            pv.put_page(mfn)
            return -EBUSY
        held = HeldFrame(self, mfn, owner, writable, holder)
        self._held.append(held)
        return held

    def hold_gfn(self, dom, gfn: int, *, writable: bool, holder: str) -> HeldFrame | int:
        """The same for a frame named by the domain's own frame number (its p2m)."""
        mfn = dom.gfn_to_mfn(gfn) if 0 <= gfn < (1 << 52) else None
        if mfn is None:
            return -EINVAL
        return self.hold(dom.domid, mfn, writable=writable, holder=holder)

    def _release(self, held: HeldFrame) -> None:
        self._held.remove(held)
        pv = self.host.mm.pv
        if held.writable:
            pv.put_page_type(held.mfn)
        pv.put_page(held.mfn)

    def held(self) -> list[HeldFrame]:
        """Every frame held right now, oldest first (invariant checks, the io view)."""
        return list(self._held)
