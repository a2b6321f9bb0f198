"""Screenshots of the Arm host at fixed, deterministic points (accept with --snapshot-update and
look at each SVG): exception levels instead of rings, the A64 registers and list registers, the
stage-1-over-stage-2 walk, the VMID-tagged TLB, the event channels and grants in the I/O pane."""

from __future__ import annotations

import pytest

from snapshot_app import build
from tui_support import command, settle

pytestmark = pytest.mark.machine       # every test here boots a whole machine


def build_arm(**kwargs):
    from lab.paths import MACHINES
    return build(target=str(MACHINES / "arm" / "arm.toml"), **kwargs)


def _arm(*commands):
    async def run_before(pilot) -> None:
        await pilot.pause()
        app = pilot.app
        await settle(pilot, app)
        for line in commands:
            await command(pilot, app, line)
    return run_before


def test_arm_whole_screen_at_the_first_event_channel_upcall(snap_compare):
    """160x45, every pane: the guest at EL1 taking PPI 31, the list register pending, the hvc log."""
    assert snap_compare(build_arm(), terminal_size=(160, 45), run_before=_arm("until interrupt:31"))


def test_arm_second_vcpu_after_psci_cpu_off(snap_compare):
    """120x40 on vCPU 1, which PSCI CPU_ON started at secondary_start with its MMU off and which
    has just called CPU_OFF: two vCPUs in the domains pane, the hvc #0 in its source."""
    assert snap_compare(build_arm(), terminal_size=(120, 40), run_before=_arm("until sched:down", "focus 1.1"))


def test_arm_medium_screen_in_the_user_program(snap_compare):
    """120x40: the program at EL0, its heap's first page (mapped on demand by the kernel: a 4 KiB
    level-3 page) walked through both stages."""
    assert snap_compare(build_arm(), terminal_size=(120, 40), run_before=_arm("run 140000", "walk 0x40800000"))
