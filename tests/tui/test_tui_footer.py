"""The key bar and the pane tabs: the keys of the focused pane drawn in place, a click presses
a key, and the tab underline moves at once."""

from __future__ import annotations

import pytest

from lab.tui.widgets.footer import KeyFooter
from tui_support import lab, run


def _shown(footer: KeyFooter) -> list[str]:
    return [item.display for _, _, item in footer.keys]


@pytest.mark.machine
def test_the_bar_follows_the_focus_without_mounting_a_widget():
    async def go():
        async with lab(size=(200, 50)) as (app, pilot):
            footer = app.main.query_one(KeyFooter)
            assert "f5" in _shown(footer) and "k" not in _shown(footer)
            mounted = []
            original_mount = app.main.mount
            app.main.mount = lambda *a, **k: mounted.append(a) or original_mount(*a, **k)
            app.main.focus_pane("calls")
            await pilot.pause()
            shown = _shown(footer)
            assert shown[:3] == ["k", "d", "x"] and "f5" in shown     # the log's own keys first
            assert not list(footer.children) and mounted == []
            app.main.focus_pane("cpu")
            await pilot.pause()
            assert "k" not in _shown(footer)
    run(go())


@pytest.mark.machine
def test_a_click_on_a_key_presses_it_and_the_palette_key_sits_on_the_right():
    async def go():
        async with lab(size=(120, 40)) as (app, pilot):
            footer = app.main.query_one(KeyFooter)
            start, end, palette = footer.keys[-1]
            assert palette.key == "ctrl+p" and end == footer.size.width
            f4 = next((s, e, item) for s, e, item in footer.keys if item.key == "f4")
            f3 = next((s, e, item) for s, e, item in footer.keys if item.key == "f3")
            assert f3[1] == f4[0]                       # a group: f3f4 Speed
            await pilot.press("f3")
            before = app.runner.speed
            await pilot.click(KeyFooter, offset=(f4[0], 0))
            await pilot.pause()
            assert app.runner.speed == before + 1
            await pilot.hover(KeyFooter, offset=(f4[0], 0))
            await pilot.pause()
            assert footer.tooltip == f4[2].tooltip and footer.tooltip
    run(go())


@pytest.mark.machine
def test_the_tab_underline_moves_at_once_even_with_animations_on():
    from textual.widgets._tabs import Underline

    async def go():
        async with lab(size=(120, 40)) as (app, pilot):
            app.animation_level = "full"
            tabs = app.main.query_one("#pane-tabs")
            underline = tabs.query_one(Underline)
            slides = []
            underline.animate = lambda *a, **k: slides.append(a)
            await pilot.press("ctrl+n")
            await pilot.pause(0.2)              # past the stock slide's 20 ms start
            active = tabs.query_one(f"#{tabs.active}")
            start, end = active.virtual_region.shrink(active.styles.gutter).column_span
            assert slides == []
            assert (underline.highlight_start, underline.highlight_end) == (start, end)
    run(go())


@pytest.mark.machine
def test_on_a_narrow_screen_keys_that_do_not_fit_are_left_out_whole_before_the_palette_key():
    from lab.tui.widgets.footer import KeyItem

    async def go():
        async with lab(size=(80, 24)) as (app, pilot):
            footer = app.main.query_one(KeyFooter)
            extra = tuple(KeyItem(f"ctrl+{c}", f"^{c}", "Something", True, "") for c in "uvw")
            footer._items = footer._items + extra
            footer.render()
            *keys, (start, end, palette) = footer.keys
            assert palette.key == "ctrl+p" and end == 80
            assert keys and keys[-1][1] < start                  # room for a space and the edge
            assert [k.display for _, _, k in keys][-1] != "^w"   # not all of them fitted
            for s, e, item in keys:                              # each one whole
                assert e - s == len(item.display) + (1 + len(item.description) if item.description else 0)
    run(go())
