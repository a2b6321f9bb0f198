"""Screenshots of the lab at fixed, deterministic points.

Every run first waits for the simulation thread to finish and the screen to
show everything it produced; nothing on screen depends on the wall clock.
Accept new baselines with ``--snapshot-update`` and look at each SVG.
"""

from __future__ import annotations

from snapshot_app import build
from tui_support import command, settle

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
        assert pilot.app.main.active_pane == "pages"
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
