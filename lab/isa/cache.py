"""Assembled images kept between runs, so the lab starts without assembling its kernels again.

An image is a pure function of its sources and of the assembler itself, so a cached
image is used only when every file it was assembled from (``Image.sources``: the file
and everything it included) still reads exactly as it did, and the assembler's own
code is the same. Anything else, or any trouble reading or writing the cache, means
assembling afresh; the cache can always be deleted.

Where: ``$XENLAB_CACHE``, else ``$XDG_CACHE_HOME/xenlab``, else ``~/.cache/xenlab``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
from pathlib import Path
from typing import Iterable

from .. import sources
from ..paths import ROOT
from .image import Image

FORMAT = 1


def cache_dir() -> Path:
    env = os.environ.get("XENLAB_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "xenlab"


@functools.cache
def _assembler_version() -> str:
    """A digest of the ISA package's own code: a new assembler never reads an old image."""
    h = hashlib.sha256(str(FORMAT).encode())
    here = Path(__file__).parent
    for f in sorted(here.glob("*.py")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _entry(path: Path, include_dirs: list[str]) -> Path:
    key = hashlib.sha256("\0".join([_assembler_version(), str(path.resolve()), *include_dirs]).encode())
    return cache_dir() / "images" / f"{key.hexdigest()[:32]}.pickle"


def _still_current(image: Image) -> bool:
    for name, text in image.sources.items():
        # sources are named as the learner sees them: relative to the lab when inside it
        p = Path(name)
        if not p.is_absolute() and not sources.exists(p):
            p = ROOT / p
        try:
            if sources.read_text(p) != text:
                return False
        except (OSError, UnicodeDecodeError):
            return False
    return bool(image.sources)


def assemble_file(path: Path | str, include_dirs: Iterable[Path | str] = ()) -> Image:
    """The assembler, loaded on a miss only: a warm start reads every image without it."""
    from .assembler import assemble_file as assemble
    return assemble(path, include_dirs=include_dirs)


def assemble_file_cached(path: Path | str, include_dirs: Iterable[Path | str] = ()) -> Image:
    """``assemble_file``, through the cache. Errors (AsmError) come from assembling, never the cache."""
    path = Path(path)
    dirs = [str(Path(d).resolve()) for d in include_dirs]
    entry = _entry(path, dirs)
    try:
        with open(entry, "rb") as f:
            image = pickle.load(f)
        if isinstance(image, Image) and _still_current(image):
            return image
    except Exception:             # missing, unreadable or from another version: assemble
        pass
    image = assemble_file(path, include_dirs=dirs)
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            pickle.dump(image, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, entry)    # whole or not at all, even with two labs starting at once
    except OSError:
        pass                      # a read-only home: the lab works, only slower to start
    return image
