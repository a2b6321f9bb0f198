"""The replay timeline's second line fits the screen: parts left out whole, never cut."""

from __future__ import annotations

import pytest

from lab.session.timetravel import TimelineView
from lab.tui.widgets.timeline import info_line, timeline_content

MARKERS = tuple((name, i * 1000) for i, name in enumerate(
    ["lesson-start", "lesson-step-1", "lesson:hint", "lesson-step-2", "m1", "m2", "m3", "m4"]))


def _view(live=False, markers=MARKERS):
    return TimelineView(now=1_234_567, extent=10_000_000, inputs=tuple(range(0, 40_000, 1000)),
                        markers=markers, input_index=17, live=live)


@pytest.mark.parametrize("width", [18, 40, 58, 78, 118, 198])
def test_the_line_fits_and_always_says_where_the_machine_is(width):
    for view in (_view(), _view(live=True), _view(markers=())):
        line = info_line(view, width)
        assert len(line) <= width
        if width >= 58:
            assert "1,234,567 of 10,000,000" in line
            assert ("live" if view.live else "input 18/40") in line


def test_at_80_columns_it_keeps_whole_words_and_says_a_command_takes_over():
    line = info_line(_view(), 78)            # 80 columns less the bar's padding
    assert line == " insn 1,234,567 of 10,000,000 · input 18/40 · a command takes over here"
    live = info_line(_view(live=True), 78)
    assert live == " insn 1,234,567 of 10,000,000 · live · markers: lesson-start  lesson-step-1 +6"
    assert info_line(_view(markers=()), 78).endswith("a command takes over here")


def test_a_wide_screen_shows_the_whole_line():
    line = info_line(_view(), 198)
    assert "markers: lesson-start  lesson-step-1" in line and "+2" in line
    assert line.endswith("a command that changes the machine takes over here")
    assert timeline_content(_view(), 198).plain.splitlines()[1] == line
