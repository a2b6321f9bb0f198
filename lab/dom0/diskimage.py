"""Disk images: the files behind guests' disks, raw 512-byte sectors.

A domain's xl.cfg names its disks (``disk = ['format=raw, vdev=hda,
access=rw, target=guest.img']``); the ``target`` is a file on the host
holding the disk's sectors one after another, as a ``raw`` image does. The
device model's emulated IDE disk and blkback's PV disk both read and write it
through :class:`DiskImage`, so what a guest writes stays on the host after the
guest is gone, and the two paths see the same data (as QEMU and blkback share
one image on a real Xen host).

* A missing image is created on first use, sparse (``truncate``), so every
  sector reads as zeros until written: the same bytes on every run.
* Nothing is cached: each read or write goes to the file, so two openers of
  one image stay coherent.
* Where the target is relative it is found beside the config file that named
  it; a config that came from no file (typed in, or built in Python), and the
  configs that come with the lab (under ``machines/``, which the lab never
  writes to), put their images in the lab data directory (:func:`data_dir`).
* The lab never opens host block devices: a target under ``/dev/`` (the
  ``phy`` style of ``'/dev/vg/guest,raw,xvda,rw'``) becomes a file of the
  same name under the data directory, and so does a target that exists but is
  not a regular file.
* Only ``raw`` is understood; another ``format`` is read as raw, with a note.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

from .. import sources

SECTOR_SIZE = 512
#: Size of an image the lab creates: 8 MiB (16384 sectors).
DEFAULT_SECTORS = 16384
#: The largest image the lab creates or accepts: LBA28's limit (128 GiB).
MAX_SECTORS = 1 << 28


class DiskImageError(Exception):
    """A read or write the image cannot do (out of range, read-only, host I/O error)."""


def data_dir() -> Path:
    """Where the lab keeps files of its own: ``$XENLAB_DATA``, else the XDG data home."""
    env = os.environ.get("XENLAB_DATA")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "xenlab"


def resolve_target(target: str, config_file: str | os.PathLike | None = None,
                   base_dir: Path | None = None) -> Path:
    """The host file behind a disk spec's ``target``.

    ``config_file`` is the xl.cfg the spec came from; ``base_dir`` replaces
    the data directory for configs that came from no file (and for ``/dev``
    targets).
    """
    store = base_dir if base_dir is not None else data_dir()
    t = Path(target)
    if t.is_absolute():
        parts = t.parts
        if len(parts) > 1 and parts[1] == "dev":
            return store / Path(*parts[1:])
        if t.exists() and not t.is_file():
            return store / "images" / Path(*parts[1:])
        return t
    if config_file is not None:
        cfg = Path(config_file)
        if cfg.is_file() and not _ships_with_lab(cfg):
            return cfg.parent / t
    return store / t


def _disk_key(path: Path, base_dir: Path | None) -> str | None:
    """A disk's name in a recording: ``data:NAME`` inside the lab's data directory, else its path."""
    store = base_dir if base_dir is not None else data_dir()
    try:
        return "data:" + path.resolve().relative_to(store.resolve()).as_posix()
    except (ValueError, OSError):
        return None


def _ships_with_lab(cfg: Path) -> bool:
    from ..paths import MACHINES
    try:
        cfg.resolve().relative_to(MACHINES.resolve())
    except ValueError:
        return False
    return True


class DiskImage:
    """A disk of ``sectors`` 512-byte sectors in a raw file (or in memory when ``path`` is None)."""

    def __init__(self, path: Path | str | None, sectors: int | None = None, readonly: bool = False) -> None:
        self.path = Path(path) if path is not None else None
        self.readonly = readonly
        self.created = False
        self._mem: dict[int, bytes] | None = None
        if self.path is None:
            self.sectors = min(sectors or DEFAULT_SECTORS, MAX_SECTORS)
            self._mem = {}
            return
        if self.path.exists():
            if not self.path.is_file():
                raise DiskImageError(f"{self.path}: not a regular file")
            self.sectors = min(self.path.stat().st_size // SECTOR_SIZE, MAX_SECTORS)
        else:
            if readonly:
                raise DiskImageError(f"{self.path}: no such image (and the disk is read-only)")
            self.sectors = min(sectors or DEFAULT_SECTORS, MAX_SECTORS)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "xb") as f:
                    f.truncate(self.sectors * SECTOR_SIZE)      # sparse: reads as zeros
            except FileExistsError:
                self.sectors = min(self.path.stat().st_size // SECTOR_SIZE, MAX_SECTORS)
            except OSError as e:
                raise DiskImageError(f"{self.path}: cannot create the image: {e.strerror or e}") from None
            else:
                self.created = True

    @classmethod
    def in_memory(cls, sectors: int = DEFAULT_SECTORS, readonly: bool = False) -> "DiskImage":
        """An image that lives only as long as the object (tests, and a fallback)."""
        return cls(None, sectors, readonly)

    @classmethod
    def with_content(cls, sectors: int, data: bytes, readonly: bool = False) -> "DiskImage":
        """An in-memory image holding ``data`` from sector 0 (zeros after it)."""
        img = cls(None, sectors, readonly)
        assert img._mem is not None
        for lba in range(min(len(data) // SECTOR_SIZE, img.sectors)):
            chunk = data[lba * SECTOR_SIZE:(lba + 1) * SECTOR_SIZE]
            if chunk.strip(b"\0"):
                img._mem[lba] = chunk
        return img

    @property
    def size(self) -> int:
        return self.sectors * SECTOR_SIZE

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "(memory)"

    def _check(self, lba: int, count: int) -> None:
        if count < 0 or lba < 0 or lba + count > self.sectors:
            raise DiskImageError(f"sectors {lba}..{lba + count - 1} are outside the disk "
                                 f"(0..{self.sectors - 1})")

    def read(self, lba: int, count: int = 1) -> bytes:
        """``count`` sectors from ``lba``."""
        self._check(lba, count)
        if self._mem is not None:
            zero = bytes(SECTOR_SIZE)
            return b"".join(self._mem.get(lba + i, zero) for i in range(count))
        try:
            with open(self.path, "rb") as f:
                f.seek(lba * SECTOR_SIZE)
                data = f.read(count * SECTOR_SIZE)
        except OSError as e:
            raise DiskImageError(f"{self.path}: read failed: {e.strerror or e}") from None
        return data.ljust(count * SECTOR_SIZE, b"\0")

    def write(self, lba: int, data: bytes) -> None:
        """Whole sectors from ``lba``; ``len(data)`` must be a multiple of 512."""
        if self.readonly:
            raise DiskImageError(f"{self.name}: the disk is read-only")
        if len(data) % SECTOR_SIZE:
            raise DiskImageError(f"a write of {len(data)} bytes is not whole sectors")
        count = len(data) // SECTOR_SIZE
        self._check(lba, count)
        if self._mem is not None:
            for i in range(count):
                self._mem[lba + i] = bytes(data[i * SECTOR_SIZE:(i + 1) * SECTOR_SIZE])
            return
        try:
            with open(self.path, "r+b") as f:
                f.seek(lba * SECTOR_SIZE)
                f.write(data)
        except OSError as e:
            raise DiskImageError(f"{self.path}: write failed: {e.strerror or e}") from None

    def sha256(self) -> str:
        """A digest of the whole disk's contents (for recordings and tests)."""
        h = hashlib.sha256()
        step = 2048
        for lba in range(0, self.sectors, step):
            h.update(self.read(lba, min(step, self.sectors - lba)))
        return h.hexdigest()


def open_disk(target: str | None, *, config_file: str | os.PathLike | None = None, base_dir: Path | None = None,
              readonly: bool = False, fmt: str = "raw",
              log: Callable[[str], None] | None = None) -> DiskImage:
    """Open (creating if needed) the image a disk spec names.

    Problems never stop the guest: an image that cannot be opened or created
    becomes an in-memory disk of the default size, and ``log`` says why.
    """
    say = log or (lambda text: None)
    if fmt != "raw":
        say(f"disk format '{fmt}' is not modelled: the image is read as raw sectors")
    if not target:
        say("disk spec has no target: using an empty in-memory disk")
        return DiskImage.in_memory(readonly=readonly)
    path = resolve_target(target, config_file, base_dir)
    start = sources.disk(path, _disk_key(path, base_dir))
    if start is not None:
        # a replay, or a trip back in time: the disk as it was when the session began
        return DiskImage.with_content(start.sectors or DEFAULT_SECTORS, start.data, readonly=readonly)
    if str(path) != target and Path(target).is_absolute():
        say(f"target {target} is not a regular file: the lab uses {path} instead")
    try:
        img = DiskImage(path, readonly=readonly)
    except DiskImageError as e:
        say(f"{e}; using an in-memory disk instead (nothing written will be kept)")
        return DiskImage.in_memory(readonly=readonly)
    if img.created:
        say(f"created {path} ({img.sectors} sectors, zero-filled)")
    return img
