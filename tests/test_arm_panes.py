"""The TLB and I/O panes on an Arm host: what the view model gives the screen."""

from __future__ import annotations

from lab.paths import MACHINES
from lab.session import live
from lab.session.commands import execute
from lab.session.view import build_view


def test_the_tlb_pane_lists_the_arm_core_s_vmid_tagged_entries():
    session = live.open_session([str(MACHINES / "arm" / "arm.toml")])
    execute(session, "run 30000")
    view = build_view(session, 1, None)
    assert view.cpu["arch"] == "arm64" and len(view.tlb) > 5
    lines = [e.describe() for e in view.tlb]
    assert all(line.startswith("VMID 2 ") for line in lines)      # dom0 has VMID 1
    assert any(line.startswith("VMID 2 global: 0x40080000 -> PA ") and line.endswith("RW X EL1") for line in lines)
    assert "event channels" in view.io and "interdomain d0:2 (xenstored)" in view.io
