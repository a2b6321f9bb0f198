"""Where the lab's data lives: ``machines/`` and ``lessons/`` beside the package."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MACHINES = ROOT / "machines"
LESSONS = ROOT / "lessons"
KERNELS = MACHINES / "kernels"
PROGRAMS = MACHINES / "programs"


def display(path: Path | str) -> str:
    """A path as the learner should see it: relative to the lab when inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)
