"""What a learner may name to open a machine, and the machine built from it.

A target is a file: a kernel source (``.s``) for the bare machine, a scenario
(``.toml``) or an xl.cfg file (``.cfg``). A relative path is read from the
current directory; a name that is no file there is looked up among the lab's
shipped machines, so ``five-modes`` opens ``machines/five-modes.toml`` from
anywhere and ``native.s`` the shipped native kernel.
"""

from __future__ import annotations

from pathlib import Path
from ..errors import UserError
from ..paths import KERNELS, MACHINES, display

SUFFIXES = (".toml", ".cfg", ".s")


def shipped_machines() -> list[str]:
    """The names of the lab's own scenarios and guest configs (``xenlab open NAME``)."""
    return sorted(p.stem for p in MACHINES.iterdir() if p.suffix in (".toml", ".cfg") and p.stem != "costs")


def resolve_target(target: str) -> Path:
    """The file ``target`` names: a path from the current directory, else a shipped machine."""
    p = Path(target).expanduser()
    if p.is_file():
        return p
    if not p.is_absolute() and len(p.parts) == 1:
        stems = [p.name] if p.suffix in SUFFIXES else [p.name + s for s in SUFFIXES]
        for folder in (MACHINES, KERNELS):
            for name in stems:
                if (folder / name).is_file() and name != "costs.toml":
                    return folder / name
    if p.exists():
        raise UserError(f"{display(p)}: not a file")
    if len(p.parts) != 1:
        raise UserError(f"{display(p)}: no such file")
    hint = ", ".join(shipped_machines())
    raise UserError(f"{display(p)}: no such file (the lab's own machines, by name: {hint})")


def check_kind(path: Path) -> None:
    if path.suffix not in SUFFIXES:
        raise UserError(f"{display(path)}: expected a kernel source (.s), a scenario (.toml) or an xl.cfg file")
