"""The lab app as the snapshot tests see it: built, never run here."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lab.tui.app import make_app  # noqa: E402


def build(**kwargs):
    from lab.paths import KERNELS
    kwargs.setdefault("theme", "textual-dark")
    kwargs.setdefault("target", str(KERNELS / "native.s"))
    return make_app(**kwargs)


def build_xen(**kwargs):
    """The default Xen scenario: Domain-0, a 64-bit PV guest and an HVM guest over EPT."""
    from lab.paths import MACHINES
    return build(target=str(MACHINES / "default.toml"), **kwargs)


app = build()
