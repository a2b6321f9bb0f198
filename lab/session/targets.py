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
from .build import DEFAULT_PROGRAM, native_machine
from .scenario import DEFAULT_SCENARIO, boot_host, load_scenario, start_scenario

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


def build_target(targets: list[str], program: str | None = None, arg: int = 0, costs: str | None = None):
    """The machine a target names: (kind, machine, toolstack or None, warnings).

    Each target is a path from the current directory or a shipped machine's name."""
    paths = [resolve_target(t) for t in targets]
    suffixes = {p.suffix for p in paths}
    if suffixes == {".s"} and len(paths) == 1:
        m = native_machine(paths[0], Path(program) if program else DEFAULT_PROGRAM, arg=arg, costs=costs)
        return "native", m, None, []
    if suffixes == {".toml"} and len(paths) == 1:
        sc = load_scenario(paths[0])
        if sc.native is not None:
            n = sc.native
            m = native_machine(n["kernel"], n["program"] or DEFAULT_PROGRAM, arg=n["arg"] or arg,
                               mem_mib=n["memory"], vendor=n["vendor"], costs=costs)
            return "native", m, None, []
        host, xl = start_scenario(sc)
        return "xen", host, xl, xl.warnings
    if suffixes == {".cfg"}:
        sc = load_scenario(DEFAULT_SCENARIO)
        host, xl = boot_host(sc.host, sc.dom0_memory, sc.dom0_vcpus)
        for p in paths:
            xl.create(p)
        return "xen", host, xl, xl.warnings
    bad = next((p for p in paths if p.suffix not in (".s", ".toml", ".cfg")), paths[0])
    raise UserError(f"{display(bad)}: expected a kernel source (.s), a scenario (.toml) or xl.cfg files (.cfg)")
