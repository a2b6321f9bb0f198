"""Where the lab reads the files a machine is built from, through one seam.

Every loader (scenarios, xl.cfg files, kernels and their includes, programs,
firmware, the cost table, a disk's starting content) asks this module, not
the filesystem. By default it is the filesystem; a recording is told of every
file read (:func:`watch`), and a replay or a trip back in time installs a
:class:`ServedSource` that serves exactly the files the recording holds, so a
recording replays on another computer with no files beside it.

Files are named by :func:`source_key`: relative to the lab when inside it
(``machines/default.toml``), else the absolute path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import zlib
from pathlib import Path
from typing import Callable, Iterator

from .paths import ROOT

SECTOR_SIZE = 512


def source_key(path: str | os.PathLike) -> str:
    """A file's name in a recording: relative to the lab when inside it, else absolute."""
    p = Path(os.path.abspath(path))
    for root in (ROOT, ROOT.resolve()):
        try:
            return p.relative_to(root).as_posix()
        except ValueError:
            continue
    return p.as_posix()


def path_of(key: str) -> Path:
    """The path a recording's file name stands for on this computer."""
    p = Path(key)
    return p if p.is_absolute() else ROOT / p


class FileSource:
    """The filesystem, as it is."""

    def read_bytes(self, path: str | os.PathLike) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def is_file(self, path: str | os.PathLike) -> bool:
        return os.path.isfile(path)

    def exists(self, path: str | os.PathLike) -> bool:
        return os.path.exists(path)

    def disk(self, key: str) -> "DiskStart | None":
        """A disk's starting content when it must not come from the host (None: as the host has it)."""
        return None


class DiskStart:
    """The content a disk starts with: ``sectors`` sectors, zeros except ``data`` (raw bytes)."""

    def __init__(self, sectors: int, data: bytes = b"") -> None:
        self.sectors = sectors
        self.data = data

    def to_json(self) -> dict:
        import base64
        out: dict = {"sectors": self.sectors}
        if self.data.strip(b"\0"):
            out["zlib"] = base64.b64encode(zlib.compress(self.data.rstrip(b"\0"), 9)).decode("ascii")
        return out

    @classmethod
    def from_json(cls, obj: dict) -> "DiskStart":
        import base64
        sectors = obj["sectors"]
        if not isinstance(sectors, int) or sectors < 0:
            raise ValueError("a disk's sectors must be a whole number")
        data = zlib.decompress(base64.b64decode(obj["zlib"])) if obj.get("zlib") else b""
        if len(data) > sectors * SECTOR_SIZE:
            raise ValueError("a disk's content is larger than the disk")
        return cls(sectors, data)



class ServedSource(FileSource):
    """Exactly the files (and disk contents) a recording holds; nothing else exists."""

    def __init__(self, files: dict[str, bytes], disks: dict[str, DiskStart] | None = None) -> None:
        self.files = files
        self.disks = disks or {}

    def read_bytes(self, path: str | os.PathLike) -> bytes:
        key = source_key(path)
        if key not in self.files:
            raise FileNotFoundError(errno.ENOENT, "not in the recording", str(path))
        return self.files[key]

    def is_file(self, path: str | os.PathLike) -> bool:
        return source_key(path) in self.files

    def exists(self, path: str | os.PathLike) -> bool:
        return self.is_file(path)

    def disk(self, key: str) -> DiskStart:
        # A disk the recording does not name started empty, of the default size.
        return self.disks.get(key) or DiskStart(0)


_FILESYSTEM = FileSource()
_current: FileSource = _FILESYSTEM
#: Told of every file (and disk) read from the filesystem: (on_file(key, bytes), on_disk(key, DiskStart)).
_watchers: list[tuple[Callable[[str, bytes], None], Callable[[str, DiskStart], None] | None]] = []


def watch(on_file: Callable[[str, bytes], None],
          on_disk: Callable[[str, DiskStart], None] | None = None) -> Callable[[], None]:
    """Be told of every file read from the filesystem from now on; returns a function that stops it."""
    entry = (on_file, on_disk)
    _watchers.append(entry)

    def stop() -> None:
        if entry in _watchers:
            _watchers.remove(entry)
    return stop


def current() -> FileSource:
    return _current


@contextlib.contextmanager
def using(source: FileSource) -> Iterator[FileSource]:
    """Read through ``source`` inside the block."""
    global _current
    before = _current
    _current = source
    try:
        yield source
    finally:
        _current = before


def read_bytes(path: str | os.PathLike) -> bytes:
    data = _current.read_bytes(path)
    if _watchers and _current is _FILESYSTEM:
        key = source_key(path)
        for on_file, _ in list(_watchers):
            on_file(key, data)
    return data


def disk(key: str, describe: Callable[[], DiskStart]) -> DiskStart | None:
    """What the disk named ``key`` must start with, or None to start it as the host has it
    (then ``describe()`` says what that is, for whoever records)."""
    start = _current.disk(key)
    if start is None and _current is _FILESYSTEM:
        watchers = [on_disk for _, on_disk in _watchers if on_disk is not None]
        if watchers:
            first = describe()
            for on_disk in watchers:
                on_disk(key, first)
    return start


def read_text(path: str | os.PathLike) -> str:
    """A text file (UTF-8); UnicodeDecodeError if it is not."""
    return read_bytes(path).decode("utf-8")


def is_file(path: str | os.PathLike) -> bool:
    return _current.is_file(path)


def exists(path: str | os.PathLike) -> bool:
    return _current.exists(path)
