"""What the screen redraws: only what changed (the costs are measured by
benchmarks/tui_responsiveness.py; these tests keep the mechanisms in place)."""

from __future__ import annotations

import pytest
from textual.scrollbar import ScrollBar
from textual.widget import Widget

from lab.tui.stylesheet import LabStylesheet
from tui_support import lab, run


def _count_refreshes(monkeypatch, cls: type[Widget]) -> list[Widget]:
    refreshed: list[Widget] = []
    original = cls.refresh

    def refresh(self, *args, **kwargs):
        refreshed.append(self)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(cls, "refresh", refresh)
    return refreshed


@pytest.mark.machine
def test_moving_the_focus_between_panes_leaves_every_scrollbar_alone(monkeypatch):
    async def go():
        async with lab(size=(200, 50)) as (app, pilot):
            assert isinstance(app.stylesheet, LabStylesheet)
            for _ in range(7):                      # every pane focused once
                await pilot.press("ctrl+n")
            refreshed = _count_refreshes(monkeypatch, ScrollBar)
            for _ in range(6):
                before = app.main.focused_pane
                await pilot.press("ctrl+n")
                await pilot.pause()
                assert app.main.focused_pane is not before
                assert app.main.focused_pane.has_class("-focused") and not before.has_class("-focused")
            assert refreshed == []
    run(go())


def test_restyling_sets_only_the_values_that_changed(monkeypatch):
    async def go():
        async with lab(size=(200, 50), target="no/such/kernel.s") as (app, pilot):
            output = app.main.query_one("#output")
            sheet = app.stylesheet
            refreshed = _count_refreshes(monkeypatch, ScrollBar)
            sheet.apply(output)
            assert refreshed == []                     # nothing changed: nothing set
            border = output.styles.border_top
            output.add_class("-focused", update=False)
            sheet.apply(output)
            assert output.styles.border_top != border  # a changed value is set
            output.remove_class("-focused", update=False)
            sheet.apply(output)
            assert output.styles.border_top == border  # and a rule that no longer applies is removed
    run(go())
