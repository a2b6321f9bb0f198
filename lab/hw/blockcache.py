"""Compiled translated blocks kept in the process and between runs.

Python's ``compile()`` is most of what translating a block costs. The generated
code is a pure function of the block's instruction bytes and the translator
itself: the addresses it names (rip values, branch targets, rip-relative
operands) are offsets from the block's start, given their values when the code
is run at an address. So compiled code is kept under exactly that key, with its
offsets: in this process for every machine it runs, and on disk for the next
run; the same bytes at another address (a library every kernel includes, a
kernel loaded elsewhere) share it. A block whose bytes change (a page written, a
snapshot restored under the machine) has a new key; nothing is ever keyed by an
object's identity. A new translator (any change to the code that decodes or
generates) reads none of the old entries.

The one-instruction pieces a cold block runs as are kept the same way, in files of
their own: each piece's shape (its code with every integer literal a parameter,
compiled once) by its text, and each piece (its shape's code and its values) by its
instruction's bytes.

Where: beside the assembled images (``lab.isa.cache.cache_dir()``), one file per
translator version and kind. Any trouble reading or writing one means compiling afresh.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import marshal
import os
import threading
from pathlib import Path
from types import CodeType

from ..isa.cache import cache_dir

FORMAT = 2
#: Entries kept on disk at most: the lab's own kernels in every mode need about 2,000
#: (some 3 MB); loading the file is part of every start.
MAX_ENTRIES = 6_000

#: A compiled block: its code and the offsets from its start of the addresses it names.
Entry = tuple[CodeType, tuple[int, ...]]


@functools.cache
def translator_version() -> str:
    """A digest of the code that decodes instructions and generates blocks."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256(f"{FORMAT} {marshal.version}".encode())
    for f in [here / "translate.py", here / "flags.py", here / "faults.py",
              *sorted((here.parent / "isa").glob("*.py"))]:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:24]


class BlockCache:
    """Compiled blocks (code and address offsets), by instruction bytes."""

    def __init__(self, directory: Path | None = None, kind: str = "",
                 max_entries: int = MAX_ENTRIES) -> None:
        self._directory = directory
        self._max = max_entries
        self._kind = kind             # "" for whole blocks, else a suffix of the file's name
        self._code: dict[bytes, Entry] = {}
        self._added: dict[bytes, Entry] = {}
        self._loaded = False
        self._path: Path | None = None      # the file read at first use: saved back to the same
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(code: bytes) -> bytes:
        return code

    def path(self) -> Path:
        return (self._directory or cache_dir()) / "blocks" / f"{translator_version()}{self._kind}.marshal"

    def get(self, key: bytes) -> Entry | None:
        if not self._loaded:
            self._load()
        code = self._code.get(key)
        if code is None:
            self.misses += 1
        else:
            self.hits += 1
        return code

    def put(self, key: bytes, entry: Entry) -> None:
        with self._lock:
            if len(self._code) >= 4 * self._max:
                return                # a guest writing endless new code: keep memory bounded
            self._code[key] = entry
            if len(self._added) < self._max:
                self._added[key] = entry

    def _load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            self._path = self.path()
            stored = self._read(self._path)
            stored.update(self._code)
            self._code = stored

    @staticmethod
    def _read(path: Path) -> dict[bytes, Entry]:
        try:
            # One read, then unmarshal from memory: marshal.load on a file reads it in
            # small pieces and takes about six times as long (every start reads this file).
            with open(path, "rb") as f:
                data = marshal.loads(f.read())
        except Exception:             # missing, unreadable or damaged: compile afresh
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(k, bytes) and _is_entry(v)}

    def save(self) -> None:
        """Add this process's new blocks to the file on disk (whole or not at all)."""
        with self._lock:
            if not self._added:
                return
            added, self._added = self._added, {}
        path = self._path or self.path()
        merged = self._read(path)
        merged.update(added)
        if len(merged) > self._max:
            # Too many: keep this run's blocks and the most recently stored of the rest.
            rest = [k for k in merged if k not in added]
            keep = rest[len(rest) - max(self._max - len(added), 0):]
            merged = {k: merged[k] for k in keep} | added
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                f.write(marshal.dumps(merged))
            os.replace(tmp, path)
        except OSError:
            pass                      # a read-only home: the lab works, only slower to start

    def clear(self) -> None:
        with self._lock:
            self._code.clear()
            self._added.clear()
            self._loaded = False
            self._path = None


def _is_entry(v: object) -> bool:
    return (isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], CodeType)
            and isinstance(v[1], tuple) and all(isinstance(o, int) for o in v[1]))


#: The caches every machine in this process shares: whole blocks, the one-instruction
#: pieces cold blocks run as (by instruction bytes: their shape's code and its
#: parameters) and the pieces' shapes (by their text), see translate.py.
BLOCKS = BlockCache()
PIECES = BlockCache(kind="-pieces", max_entries=3 * MAX_ENTRIES)
SHAPES = BlockCache(kind="-shapes")
atexit.register(BLOCKS.save)
atexit.register(PIECES.save)
atexit.register(SHAPES.save)
