"""Machine memory: sparse 4 KiB frames addressed by machine frame number.

A frame exists once something writes to it or allocates it; reading a frame
that was never touched reads zeros. Frames are plain ``bytearray`` objects so
the CPU's fast paths can index them directly.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from itertools import compress, filterfalse
from operator import ne

from .snapshot import Plain

_U64 = struct.Struct("<Q")
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = PAGE_SIZE - 1
ZERO_PAGE = bytes(PAGE_SIZE)


class BusError(Exception):
    """An access beyond the end of machine memory (a bus error)."""


class MachineMemory:
    def __init__(self, size_bytes: int) -> None:
        if size_bytes % PAGE_SIZE:
            raise ValueError("memory size must be a whole number of pages")
        self.size = size_bytes
        self.nr_frames = size_bytes >> PAGE_SHIFT
        self.frames: dict[int, bytearray] = {}
        #: Bumped on every write to a frame in ``watched``; the CPU uses this
        #: to drop translated code when its page is written.
        self.watched: set[int] = set()
        self.on_watched_write: Callable[[int], None] | None = None
        #: Frames whose CPU writes must be seen by someone (write-protected
        #: page tables under shadow paging, for instance): mfn -> callable.
        self.write_hooks: dict[int, Callable[[int, int, int], None]] = {}
        #: The frames the last snapshot saved (or restored): unchanged ones are shared.
        self._saved: dict[int, bytes] = {}
        #: Each frame's bytes when it was last hashed, so that a digest hashes again only the
        #: frames whose bytes changed (comparing two pages costs a thirtieth of hashing one);
        #: the hash of each such frame that is not all zeros, and that hash after the frame's
        #: number as the digest feeds it.
        self._hashed_bytes: dict[int, bytes] = {}
        self._hashes: dict[int, bytes] = {}
        self._hash_records: dict[int, bytes] = {}

    # -- frames ---------------------------------------------------------
    def frame(self, mfn: int) -> bytearray:
        """The frame's bytes, created zeroed on first use."""
        f = self.frames.get(mfn)
        if f is None:
            if not 0 <= mfn < self.nr_frames:
                raise BusError(f"machine frame {mfn:#x} is beyond the end of memory")
            f = self.frames[mfn] = bytearray(PAGE_SIZE)
        return f

    def exists(self, mfn: int) -> bool:
        return 0 <= mfn < self.nr_frames

    # -- byte access by machine address -----------------------------------
    def read(self, addr: int, length: int) -> bytes:
        out = bytearray()
        while length > 0:
            off = addr & PAGE_MASK
            n = min(length, PAGE_SIZE - off)
            out += self.frame(addr >> PAGE_SHIFT)[off:off + n]
            addr += n
            length -= n
        return bytes(out)

    def write(self, addr: int, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            off = addr & PAGE_MASK
            n = min(len(data) - pos, PAGE_SIZE - off)
            mfn = addr >> PAGE_SHIFT
            self.frame(mfn)[off:off + n] = data[pos:pos + n]
            if mfn in self.watched and self.on_watched_write is not None:
                self.on_watched_write(mfn)
            addr += n
            pos += n

    def read_u64(self, addr: int) -> int:
        if addr & 7 == 0:
            f = self.frames.get(addr >> PAGE_SHIFT)
            if f is None:
                f = self.frame(addr >> PAGE_SHIFT)
            return _U64.unpack_from(f, addr & PAGE_MASK)[0]
        return int.from_bytes(self.read(addr, 8), "little")

    def write_u64(self, addr: int, value: int) -> None:
        off = addr & PAGE_MASK
        if off > PAGE_SIZE - 8:
            self.write(addr, (value & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "little"))
            return
        mfn = addr >> PAGE_SHIFT
        f = self.frames.get(mfn)
        if f is None:
            f = self.frame(mfn)
        _U64.pack_into(f, off, value & 0xFFFF_FFFF_FFFF_FFFF)
        if mfn in self.watched and self.on_watched_write is not None:
            self.on_watched_write(mfn)

    def read_uint(self, addr: int, size: int) -> int:
        return int.from_bytes(self.read(addr, size), "little")

    def write_uint(self, addr: int, size: int, value: int) -> None:
        self.write(addr, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))

    def zero_frame(self, mfn: int) -> None:
        # A frame never touched already reads as zeros: it stays absent (allocating
        # a guest's whole memory must not cost a bytearray per page).
        f = self.frames.get(mfn)
        if f is not None:
            f[:] = ZERO_PAGE
        elif not 0 <= mfn < self.nr_frames:
            raise BusError(f"machine frame {mfn:#x} is beyond the end of memory")
        if mfn in self.watched and self.on_watched_write is not None:
            self.on_watched_write(mfn)

    # -- state ------------------------------------------------------------
    def frame_hashes(self, as_digested: bool = False) -> dict[int, bytes]:
        """A 16-byte hash (SHA-256, cut) of every frame that is not all zeros, by frame number;
        ``as_digested``: as the last ``digest_into`` found them (nothing has run since), which
        spares reading the whole memory again."""
        if not as_digested:
            self._hash_changed_frames()
        return dict(self._hashes)

    def digest_into(self, h: "hashlib._Hash") -> None:
        """Feed every non-zero frame's number and hash, in frame order, into a hash."""
        self._hash_changed_frames()
        records = self._hash_records
        h.update(b"".join(map(records.__getitem__, sorted(records))))

    def _hash_changed_frames(self) -> None:
        frames, copies, hashes, records = self.frames, self._hashed_bytes, self._hashes, self._hash_records
        # Which frames differ from their copies, compared in C (no Python step per frame).
        changed = list(compress(frames, map(ne, frames.values(), map(copies.get, frames))))
        saved = self._saved
        for mfn in changed:
            f = frames[mfn]
            p = saved.get(mfn)
            data = copies[mfn] = p if p is not None and p == f else bytes(f)    # share a snapshot's bytes
            if data == ZERO_PAGE:
                hashes.pop(mfn, None)
                records.pop(mfn, None)
            else:
                hv = hashes[mfn] = hashlib.sha256(data).digest()[:16]
                records[mfn] = mfn.to_bytes(8, "little") + hv
        if len(copies) != len(frames):           # frames gone (a restore dropped them)
            for mfn in copies.keys() - frames.keys():
                del copies[mfn]
                hashes.pop(mfn, None)
                records.pop(mfn, None)

    def snapshot(self) -> dict[int, bytes]:
        return {mfn: bytes(f) for mfn, f in self.frames.items()}

    def save_state(self) -> dict:
        """Every frame's bytes; a frame unchanged since the last snapshot shares its bytes."""
        prev, live = self._saved, self.frames
        frames = dict(zip(live, map(prev.get, live)))       # the last snapshot's bytes, where it had the frame
        # The frames that differ from those bytes (or are new), found in C: no Python step per frame.
        for mfn in list(compress(live, map(ne, live.values(), frames.values()))):
            frames[mfn] = bytes(live[mfn])
        self._saved = frames
        return {"frames": Plain(frames), "write_hooks": dict(self.write_hooks)}

    def load_state(self, state: dict) -> None:
        """Frames back in place (callers holding a frame keep it); translated code is
        dropped only for frames whose bytes differ."""
        frames = state["frames"]
        live = self.frames
        changed = list(filterfalse(frames.__contains__, live))
        for mfn in changed:
            del live[mfn]
        # The frames whose bytes differ (or that are gone), found in C as save_state finds them.
        differ = list(compress(frames, map(ne, map(live.get, frames), frames.values())))
        for mfn in differ:
            f = live.get(mfn)
            if f is None:
                live[mfn] = bytearray(frames[mfn])
            else:
                f[:] = frames[mfn]
        changed += differ
        self.write_hooks = state["write_hooks"]
        self._saved = frames
        if self.on_watched_write is not None:
            for mfn in changed:
                if mfn in self.watched:
                    self.on_watched_write(mfn)

    def restore(self, snap: dict[int, bytes]) -> None:
        # Keep bytearray identity where possible so callers holding frames stay valid.
        for mfn in list(self.frames):
            if mfn not in snap:
                del self.frames[mfn]
        for mfn, data in snap.items():
            f = self.frames.get(mfn)
            if f is None:
                self.frames[mfn] = bytearray(data)
            else:
                f[:] = data
