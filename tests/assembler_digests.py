"""What the assembler makes of every x86 source under ``machines/``, as digests.

Speed work on the assembler must never change its output. ``test_assembler_digests.py``
checks that each file's image (section bytes, symbols, labels, source map, item sizes,
sources and entry: the whole ``Image.to_bytes`` container), its listing, or the message
it fails with, are byte for byte the ones recorded in ``data/assembler_digests.json``.
When the assembler's output changes on purpose, record them again with
``python tests/assembler_digests.py --update``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RECORDED = HERE / "data" / "assembler_digests.json"


def sources() -> list[str]:
    """Every x86 source file under machines/ (the Arm machine has its own assembler), as shown."""
    found = sorted(p for p in (ROOT / "machines").rglob("*.s") if "arm" not in p.relative_to(ROOT).parts)
    return [str(p.relative_to(ROOT)) for p in found]


def file_digest(name: str) -> dict:
    """One file assembled as the lab assembles its kernels (include dirs: kernels, programs)."""
    from lab.isa.assembler import AsmError, assemble_file
    from lab.isa.listing import render_listing
    from lab.paths import KERNELS, PROGRAMS

    try:
        image = assemble_file(name, include_dirs=[KERNELS, PROGRAMS])
    except AsmError as e:
        return {"error": str(e)}
    return {"image": hashlib.sha256(image.to_bytes()).hexdigest(),
            "listing": hashlib.sha256(render_listing(image).encode()).hexdigest()}


def all_digests(names: list[str] | None = None) -> dict[str, dict]:
    """Digests of ``names`` (default: every source), assembled in that order from the lab's root."""
    here = os.getcwd()
    os.chdir(ROOT)              # file names in images and messages are relative to the working directory
    try:
        return {name: file_digest(name) for name in (names if names is not None else sources())}
    finally:
        os.chdir(here)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/assembler_digests.py --update")
    RECORDED.write_text(json.dumps(all_digests(), indent=1, sort_keys=True) + "\n")
    print(f"recorded {RECORDED.relative_to(ROOT)}")
