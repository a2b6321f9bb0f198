"""Disk images: the sectors behind guests' disks, private to the lab.

A domain's xl.cfg names its disks (``disk = ['format=raw, vdev=hda,
access=rw, target=guest.img']``). On a real host the ``target`` is the
learner's own file or block device; configs copied from real hosts name real
disks (``phy:/dev/vg0/web``, ``/srv/xen/web.img``), and the lab often runs as
a user who could write them. So the lab never opens a target for writing,
never creates, truncates or changes it, and never opens a device:

* each disk is a *private image*: an unnamed file in the lab's data directory
  (:func:`data_dir`), gone when the lab exits, sparse, so every sector reads
  as zeros until the guest writes it: the same bytes on every run, which
  recordings need to replay;
* it has the size of the target when the target is an existing regular file
  (its size is all that is looked at), else :data:`DEFAULT_SECTORS`;
* reading an existing target as the starting content (never writing it) is
  an explicit choice: the environment variable ``XENLAB_READ_HOST_IMAGES=1``,
  reported in the disk's log line;
* within one host, every opener of a target (the device model's IDE disk and
  blkback's PV disk) shares one private image, as QEMU and blkback share one
  image on a real Xen host.

What a disk starts with (its size, and the target's content when it was
read) goes through :func:`lab.sources.disk`, so a recording holds it and a
replay starts the disk the same, on any computer.

Only ``raw`` is understood; another ``format`` is read as raw, with a note.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

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


def read_host_images() -> bool:
    """Has the learner asked for existing targets to be read as starting content?"""
    return os.environ.get("XENLAB_READ_HOST_IMAGES", "") not in ("", "0", "no", "false")


def resolve_target(target: str, config_file: str | os.PathLike | None = None) -> Path:
    """The host path a disk spec's ``target`` names (looked at, at most read, never written).

    A relative target is found beside the config file that named it; one from
    no file is relative to the current directory, as xl takes it.
    """
    t = Path(target)
    if t.is_absolute():
        return t
    if config_file is not None:
        return Path(config_file).parent / t
    return t


def _host_size(path: Path) -> int | None:
    """Sectors of an existing regular file (devices and anything else are never opened)."""
    try:
        if path.parts[:2] == ("/", "dev") or not path.is_file():
            return None
        return path.stat().st_size // SECTOR_SIZE
    except OSError:
        return None


class DiskImage:
    """A disk of ``sectors`` 512-byte sectors in a private file (or in memory when ``file`` is None)."""

    def __init__(self, file: BinaryIO | None, sectors: int | None = None, readonly: bool = False,
                 name: str = "(memory)") -> None:
        self.file = file
        self.readonly = readonly
        self.name = name
        self.sectors = min(sectors or DEFAULT_SECTORS, MAX_SECTORS)
        self._mem: dict[int, bytes] | None = {} if file is None else None
        #: Sectors of a file image written since it was opened (lba -> bytes), and what
        #: they held before: so snapshots can carry the disk's contents and put them back.
        self._written: dict[int, bytes] = {}
        self._pristine: dict[int, bytes] = {}
        if file is not None:
            file.truncate(self.sectors * SECTOR_SIZE)       # sparse: reads as zeros

    @classmethod
    def in_memory(cls, sectors: int = DEFAULT_SECTORS, readonly: bool = False) -> "DiskImage":
        """An image that lives only as long as the object (tests, and a fallback)."""
        return cls(None, sectors, readonly)

    @classmethod
    def private(cls, store: Path, sectors: int | None, readonly: bool, name: str) -> "DiskImage":
        """A fresh, unnamed, zero-filled file in ``store``: nobody else can open it, and it
        goes when the lab closes it. In memory when ``store`` cannot hold one."""
        try:
            store.mkdir(parents=True, exist_ok=True)
            f = tempfile.TemporaryFile(dir=store)
        except OSError:
            img = cls(None, sectors, readonly, name)
            return img
        return cls(f, sectors, readonly, name)

    @property
    def size(self) -> int:
        return self.sectors * SECTOR_SIZE

    def load_from(self, path: Path) -> None:
        """Starting content from a host file, read only (the learner asked for it)."""
        zero = bytes(2048 * SECTOR_SIZE)
        with open(path, "rb") as f:
            for lba in range(0, self.sectors, 2048):
                chunk = f.read(min(2048, self.sectors - lba) * SECTOR_SIZE)
                if not chunk:
                    break
                if chunk != zero[:len(chunk)]:
                    self._store(lba, chunk.ljust(-(-len(chunk) // SECTOR_SIZE) * SECTOR_SIZE, b"\0"))

    def load_bytes(self, data: bytes) -> None:
        """Starting content from bytes (a recording's): sector 0 on, zeros after."""
        for lba in range(0, min(len(data) // SECTOR_SIZE, self.sectors), 2048):
            chunk = data[lba * SECTOR_SIZE:min(lba + 2048, self.sectors) * SECTOR_SIZE]
            if chunk.strip(b"\0"):
                self._store(lba, chunk)

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
            self.file.seek(lba * SECTOR_SIZE)
            data = self.file.read(count * SECTOR_SIZE)
        except OSError as e:
            raise DiskImageError(f"{self.name}: read failed: {e.strerror or e}") from None
        return data.ljust(count * SECTOR_SIZE, b"\0")

    def write(self, lba: int, data: bytes) -> None:
        """Whole sectors from ``lba``; ``len(data)`` must be a multiple of 512."""
        if self.readonly:
            raise DiskImageError(f"{self.name}: the disk is read-only")
        if len(data) % SECTOR_SIZE:
            raise DiskImageError(f"a write of {len(data)} bytes is not whole sectors")
        self._check(lba, len(data) // SECTOR_SIZE)
        self._put(lba, data)

    def _put(self, lba: int, data: bytes) -> None:
        """A guest's write: kept, and for a file image remembered for snapshots."""
        if self._mem is None:
            count = len(data) // SECTOR_SIZE
            fresh = [i for i in range(count) if lba + i not in self._pristine]
            if fresh:
                before = self.read(lba, count)
                for i in fresh:
                    self._pristine[lba + i] = before[i * SECTOR_SIZE:(i + 1) * SECTOR_SIZE]
            for i in range(count):
                self._written[lba + i] = bytes(data[i * SECTOR_SIZE:(i + 1) * SECTOR_SIZE])
        self._store(lba, data)

    def _store(self, lba: int, data: bytes) -> None:
        if self._mem is not None:
            for i in range(len(data) // SECTOR_SIZE):
                self._mem[lba + i] = bytes(data[i * SECTOR_SIZE:(i + 1) * SECTOR_SIZE])
            return
        try:
            self.file.seek(lba * SECTOR_SIZE)
            self.file.write(data)
            self.file.flush()
        except OSError as e:
            raise DiskImageError(f"{self.name}: write failed: {e.strerror or e}") from None

    # -- state --------------------------------------------------------------------
    def save_state(self) -> dict:
        """The disk's contents as this run changed them (a file image's other sectors never change)."""
        return {"sectors": self.sectors, "readonly": self.readonly,
                "mem": dict(self._mem) if self._mem is not None else None, "written": dict(self._written)}

    def load_state(self, state: dict) -> None:
        self.sectors, self.readonly = state["sectors"], state["readonly"]
        if state["mem"] is not None:
            self._mem = dict(state["mem"])
        written = state["written"]
        for lba in sorted(set(self._written) | set(written)):
            want = written.get(lba, self._pristine.get(lba))
            if want is not None and self._written.get(lba) != want:
                self._store(lba, want)
        self._written = dict(written)

    def sha256(self) -> str:
        """A digest of the whole disk's contents (for recordings and tests)."""
        h = hashlib.sha256()
        step = 2048
        for lba in range(0, self.sectors, step):
            h.update(self.read(lba, min(step, self.sectors - lba)))
        return h.hexdigest()


def starting_content(source: Path) -> "sources.DiskStart":
    """What a disk opened now starts with: the target's size, and its content when the
    learner asked for host images to be read."""
    size = _host_size(source)
    data = b""
    if size is not None and read_host_images():
        try:
            data = source.read_bytes()[:size * SECTOR_SIZE]
        except OSError:
            data = b""
    return sources.DiskStart(size or DEFAULT_SECTORS, data)


def shared_images(host) -> dict[str, DiskImage]:
    """The private images a host (or a bare machine) has opened so far, by target."""
    images = getattr(host, "disk_images", None)
    if images is None:
        images = host.disk_images = {}
    return images


def open_disk(target: str | None, *, config_file: str | os.PathLike | None = None, base_dir: Path | None = None,
              readonly: bool = False, fmt: str = "raw", log: Callable[[str], None] | None = None,
              shared: dict[str, DiskImage] | None = None) -> DiskImage:
    """The private image of the disk a spec names (see the module's docstring).

    ``shared`` holds the images already opened on this host, by target, so
    the device model and blkback see the same disk; ``base_dir`` replaces the
    data directory. Problems never stop the guest: an image that cannot be
    made becomes an in-memory disk, and ``log`` says why.
    """
    say = log or (lambda text: None)
    if fmt != "raw":
        say(f"disk format '{fmt}' is not modelled: the image is read as raw sectors")
    if not target:
        say("disk spec has no target: using an empty in-memory disk")
        return DiskImage.in_memory(readonly=readonly)
    source = resolve_target(target, config_file)
    key = os.path.normpath(os.path.abspath(source))
    if shared is not None and key in shared:
        return shared[key]
    store = (base_dir if base_dir is not None else data_dir()) / "disks"
    recorded = sources.disk(sources.source_key(source), lambda: starting_content(source))
    if recorded is not None:
        # a replay, or a trip back in time: the disk as it was when the session began
        img = DiskImage.private(store, recorded.sectors or None, readonly, f"private image of {target}")
        if recorded.data:
            img.load_bytes(recorded.data)
        say(f"{target}: starting content from the session's sources ({img.sectors} sectors)")
        if shared is not None:
            shared[key] = img
        return img
    size = _host_size(source)
    img = DiskImage.private(store, size, readonly, f"private image of {target}")
    if size is not None and read_host_images():
        try:
            img.load_from(source)
        except OSError as e:
            say(f"{target}: cannot read it as the starting content ({e.strerror or e}); the disk starts zero-filled")
        else:
            say(f"{target}: starting content read from the host file (XENLAB_READ_HOST_IMAGES); "
                f"the file itself is never written")
    elif size is not None:
        say(f"{target}: a private zero-filled image of the same size ({img.sectors} sectors); the host file "
            f"is never opened (XENLAB_READ_HOST_IMAGES=1 reads it as the starting content)")
    else:
        say(f"{target}: a private zero-filled image ({img.sectors} sectors)")
    if shared is not None:
        shared[key] = img
    return img
