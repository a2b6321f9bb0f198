"""The screen on an Arm host: exception levels instead of rings, A64 registers, the two-stage walk."""

from __future__ import annotations

import pytest

from lab.paths import MACHINES
from tui_support import command, lab, output_text, pane_text, run, settle


@pytest.mark.machine
def test_the_cpu_and_walk_panes_speak_arm():
    async def go():
        async with lab(size=(160, 45), target=str(MACHINES / "arm" / "arm.toml")) as (app, pilot):
            await command(pilot, app, "run 3000")
            await settle(pilot, app)
            assert "EL1 (guest kernel), pc 0x" in output_text(app)
            rings = pane_text(app, "#cpu-rings")
            assert rings.splitlines()[1:] == ["EL2 Xen", "EL1 ▶ d1v0", "EL0 ·"]
            summary = pane_text(app, "#cpu-summary")
            assert "EL 1: the guest kernel" in summary and "ring" not in summary
            regs = pane_text(app, "#cpu-regs")
            assert "x27 0000000040400000" in regs and "HCR_EL2 VM FMO IMO AMO TWI TSC RW" in regs
            walk = pane_text(app, "#pages-walk")
            assert "VTTBR_EL2 0x2000005001000" in walk and "through stage 2" in walk
    run(go())


@pytest.mark.machine
def test_the_arm_cpu_pane_tells_the_same_story_for_time_as_x86():
    """insn and ran cycles, then the vCPU's clock beside the host's: no unlabelled cycle counter."""
    async def go():
        async with lab(size=(160, 45), target=str(MACHINES / "arm" / "arm.toml")) as (app, pilot):
            await command(pilot, app, "run 3000")
            await settle(pilot, app)
            session = app.runner.session
            _, host_clock = session.clock()
            vcpu = session.machine.domains[1].vcpus[0]
            summary = pane_text(app, "#cpu-summary")
            assert f"insn {vcpu.cpu.icount:,}  ran {vcpu.run_cycles:,} cycles" in summary
            assert f"vcpu clock {vcpu.cpu.cycles:,}  host clock {host_clock:,}" in summary
            assert 0 < vcpu.run_cycles <= vcpu.cpu.cycles <= host_clock
            assert "cycle " not in summary.replace("cycles", "")
            # The state beside the name is Xen's runstate, as in the domains pane, not a bare "ready".
            assert vcpu.runstate == "running"
            assert summary.splitlines()[0].endswith("vcpu 0  running")
    run(go())
