"""Screenshots of the lab at fixed, deterministic points.

Every run first waits for the simulation thread to finish and the screen to
show everything it produced; nothing on screen depends on the wall clock.
Accept new baselines with ``--snapshot-update`` and look at each SVG.
"""

from __future__ import annotations

import pytest

from snapshot_app import build, build_xen
from tui_support import command, settle

pytestmark = pytest.mark.machine       # every test here boots a whole machine

APP = "snapshot_app.py"


async def _page_fault(pilot) -> None:
    await pilot.pause()
    app = pilot.app
    await settle(pilot, app)
    await command(pilot, app, "until trap:#PF")


def test_whole_screen_at_the_first_page_fault(snap_compare):
    """Large terminal: every pane, after the user program's first #PF."""
    assert snap_compare(APP, terminal_size=(200, 50), run_before=_page_fault)


def test_small_screen_at_the_first_page_fault(snap_compare):
    """80x24: the CPU tab, tabs for the other panes, prompt, status and keys."""
    assert snap_compare(APP, terminal_size=(80, 24), run_before=_page_fault)


def test_page_table_pane_walks_an_unmapped_address(snap_compare):
    """Medium terminal: CPU beside the page-table pane showing a walk that faults at L2."""
    async def run_before(pilot):
        await _page_fault(pilot)
        await command(pilot, pilot.app, "walk 0x10000000")
        assert "pages" in pilot.app.main.visible_panes()
    assert snap_compare(APP, terminal_size=(120, 40), run_before=run_before)


def test_hypercall_log_explains_the_page_fault(snap_compare):
    """The event log with the #PF selected: what it means and which line caused it."""
    async def run_before(pilot):
        await _page_fault(pilot)
        app = pilot.app
        app.main.activate("calls")
        await pilot.pause()
        app.main.query_one("#calls EventList").focus()
        await pilot.press("end")
        await settle(pilot, app)
    assert snap_compare(APP, terminal_size=(120, 40), run_before=run_before)


def test_help_screen(snap_compare):
    async def run_before(pilot):
        await pilot.pause()
        await settle(pilot, pilot.app)
        await pilot.press("f1")
        await pilot.pause()
    assert snap_compare(APP, terminal_size=(100, 30), run_before=run_before)


def test_light_theme_after_the_program_finishes(snap_compare):
    async def run_before(pilot):
        await pilot.pause()
        await settle(pilot, pilot.app)
        await command(pilot, pilot.app, "run")
    assert snap_compare(build(theme="textual-light"), terminal_size=(120, 40), run_before=run_before)


# -- the default Xen scenario -----------------------------------------------------------------

def _xen(*commands):
    async def run_before(pilot) -> None:
        await pilot.pause()
        app = pilot.app
        await settle(pilot, app)
        for line in commands:
            await command(pilot, app, line)
    return run_before


def test_xen_whole_screen_pv_guest_after_its_first_mmu_update(snap_compare):
    """Every pane on the PV guest: Xen in ring 0, its kernel in ring 3 (kernel mode), the
    hypercall page's stub in the CPU pane, the hypercall log ending at the mmu_update."""
    assert snap_compare(build_xen(), terminal_size=(200, 50),
                        run_before=_xen("until hypercall:mmu_update", "focus pv-guest"))


def test_xen_whole_screen_hvm_guest_after_an_io_exit(snap_compare):
    """Every pane on the HVM guest: non-root ring 0, its firmware's out, the exit in the log,
    its console."""
    assert snap_compare(build_xen(), terminal_size=(200, 50),
                        run_before=_xen("until vmexit:IO_INSTRUCTION", "focus hvm-guest"))


def test_xen_page_table_pane_during_an_hvm_2d_walk(snap_compare):
    """The page-table tab, full width: a user address of the HVM guest, each guest level's
    table translated through EPT, then the final address; 24 memory references."""
    async def run_before(pilot):
        await _xen("until sysret", "focus hvm-guest", "walk 0x401000")(pilot)
        assert "pages" in pilot.app.main.visible_panes()
    assert snap_compare(build_xen(), terminal_size=(110, 60), run_before=run_before)


def test_xen_small_screen(snap_compare):
    """80x24 on the Xen scenario: the CPU tab of the PV guest in the hypercall page."""
    assert snap_compare(build_xen(), terminal_size=(80, 24),
                        run_before=_xen("until hypercall:mmu_update", "focus pv-guest"))


def test_xen_small_screen_domains_tab(snap_compare):
    """80x24: the Domains tab with Domain-0 focused."""
    async def run_before(pilot):
        await _xen("until hypercall:mmu_update", "focus Domain-0")(pilot)
        pilot.app.main.activate("domains")
        await settle(pilot, pilot.app)
    assert snap_compare(build_xen(), terminal_size=(80, 24), run_before=run_before)


def test_xen_medium_screen(snap_compare):
    """120x40: domains, page tables and the hypercall log beside the CPU, the breakpoint's
    event selected in the log where the HVM guest's I/O exit fired."""
    assert snap_compare(build_xen(), terminal_size=(120, 40),
                        run_before=_xen("break vmexit:IO_INSTRUCTION", "run"))


def test_xen_large_screen(snap_compare):
    """160x45: every pane at once, xl list in the command output fitted to its width, every column kept."""
    assert snap_compare(build_xen(), terminal_size=(160, 45),
                        run_before=_xen("until hypercall:mmu_update", "xl list"))


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 50)])
def test_xen_tables_in_the_command_output_at_every_size(snap_compare, size):
    """xl vcpu-list and xl list fitted to the output pane when drawn: every column kept."""
    assert snap_compare(build_xen(), terminal_size=size,
                        run_before=_xen("run 200000", "xl vcpu-list", "xl list"))


def test_xen_2d_walk_as_a_grid(snap_compare):
    """120x40: g in the page-table pane draws the HVM guest's 2-D walk as a grid of its
    24 memory references."""
    from tui_support import pane_text

    async def run_before(pilot):
        await _xen("until sysret", "focus hvm-guest", "walk 0x401000")(pilot)
        app = pilot.app
        app.main.focus_pane("pages")
        await pilot.pause()
        assert "(g: as a grid)" in pane_text(app, "#pages-walk")
        await pilot.press("g")
        await pilot.pause()
        grid = pane_text(app, "#pages-walk")
        assert grid.startswith("2-D walk of 0x401000: 24 memory references")
        assert "guest entry    5   10   15   20    ·" in grid
        await pilot.press("g")                                  # and back to the levels
        await pilot.pause()
        assert "L4 PML4 table" in pane_text(app, "#pages-walk")
        await pilot.press("g")
        await settle(pilot, app)
        assert app.main.query_one("#pages").as_grid
    assert snap_compare(build_xen(), terminal_size=(120, 40), run_before=run_before)
