"""What the screen redraws: only what changed (the costs are measured by
benchmarks/tui_responsiveness.py; these tests keep the mechanisms in place)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from textual.app import App
from textual.content import Content
from textual.screen import Screen
from textual.scrollbar import ScrollBar
from textual.visual import Visual
from textual.widget import Widget
from textual.widgets.tree import TreeNode

from lab.session.view import VcpuInfo
from lab.trace import Event
from lab.tui.stylesheet import LabStylesheet
from lab.tui.widgets.domains import DomainTree
from lab.tui.widgets.eventlist import EventList
from lab.tui.widgets.text import Text
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


@pytest.mark.machine
def test_a_focus_move_between_panes_is_one_frame(monkeypatch):
    async def go():
        async with lab(size=(200, 50)) as (app, pilot):
            for _ in range(7):                      # every pane focused once
                await pilot.press("ctrl+n")
            await pilot.pause(0.2)
            frames: list[object] = []
            refresh = Screen._compositor_refresh

            def counting(screen):
                if screen._compositor._dirty_regions:       # a frame that draws something
                    frames.append(screen.focused_pane)
                return refresh(screen)
            monkeypatch.setattr(Screen, "_compositor_refresh", counting)
            for _ in range(6):
                frames.clear()
                await pilot.press("ctrl+n")
                await pilot.pause(0.2)
                assert frames == [app.main.focused_pane]
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


class _TextApp(App[None]):
    CSS = "Text { text-wrap: nowrap; text-overflow: ellipsis; width: 30; height: auto; padding: 0 1; }"

    def compose(self):
        yield Text("", id="t")


def _regs(rax: str, note: str = "") -> Content:
    return Content.assemble(("rax ", "$text-muted"), rax, "\n", ("rbx ", "bold"), "0x1\n\n",
                            ("a line too long for the thirty columns of this text", "$text-error"), f"\nlast{note}")


def test_a_text_redraws_only_the_lines_that_changed_and_draws_them_as_static_does(monkeypatch):
    async def go():
        app = _TextApp()
        async with app.run_test(size=(60, 12)) as pilot:
            text = app.query_one(Text)
            text.show(_regs("0x1234"))
            await pilot.pause()
            drawn: list[int] = []
            render_line = Text.render_line

            def counting(self, y):
                drawn.append(y)
                return render_line(self, y)
            monkeypatch.setattr(Text, "render_line", counting)
            text.show(_regs("0x5678", note="!"))
            await pilot.pause()
            assert sorted(set(drawn)) == [0, 4]                     # the two lines that changed
            drawn.clear()
            text.show(_regs("0x5678", note="!"))                    # the same text: nothing
            await pilot.pause()
            assert drawn == []
            # Line by line, each row is what Static draws for the whole text (offsets included).
            whole = Visual.to_strips(text, text.visual, text.size.width, text.size.height, text.visual_style)
            assert [list(render_line(text, y)) for y in range(5)] == [list(s) for s in whole]
            assert render_line(text, 3).text == "a line too long for the thi…"
            # A restyle (a theme) draws every line again, in the new colours.
            before = list(render_line(text, 3))
            app.theme = "textual-light"
            await pilot.pause()
            assert list(render_line(text, 3)) != before
            whole = Visual.to_strips(text, text.visual, text.size.width, text.size.height, text.visual_style)
            assert [list(render_line(text, y)) for y in range(5)] == [list(s) for s in whole]
            # Most lines changed: drawn at once, the same.
            drawn.clear()
            text.show(Content.assemble(*[(f"line {y}\n", "$text-success") for y in range(4)], "end"))
            await pilot.pause()
            assert sorted(set(drawn)) == [0, 1, 2, 3, 4]
            whole = Visual.to_strips(text, text.visual, text.size.width, text.size.height, text.visual_style)
            assert [list(render_line(text, y)) for y in range(5)] == [list(s) for s in whole]
    run(go())


def test_the_domains_tree_relabels_only_a_node_that_reads_differently(monkeypatch):
    async def go():
        async with lab(size=(200, 50), target="no/such/kernel.s") as (app, pilot):
            tree = app.main.query_one(DomainTree)
            running = VcpuInfo("pv-guest (pv)", 1, 0, "1.0", "running", 3, True, True, runstate="running",
                               pcpu=1, role="kernel", mode="pv", run_cycles=100)
            tree.show((running,))
            await pilot.pause()
            relabelled: list[object] = []
            monkeypatch.setattr(TreeNode, "set_label", lambda node, label: relabelled.append(label))
            later = replace(running, run_cycles=200)                # the same line on screen
            tree.show((later,))
            assert relabelled == []
            assert tree.node_for(1, 0).data == later               # the node holds the newest info
            tree.show((replace(later, runstate="runnable"),))
            assert [str(label) for label in relabelled] == ["▶ vcpu0 pCPU1 runnable · ring 3 root kernel"]
    run(go())


@pytest.mark.machine
@pytest.mark.parametrize("size, tabs", [((80, 24), 6), ((120, 40), 3)])
def test_a_tab_switch_is_one_frame(monkeypatch, size, tabs):
    async def go():
        async with lab(size=size) as (app, pilot):
            app.main.cmd().cursor_blink = False
            for _ in range(tabs):                   # every pane behind a tab shown once
                await pilot.press("ctrl+n")
            await pilot.pause(0.2)
            frames: list[str] = []
            refresh = Screen._compositor_refresh

            def counting(screen):
                if screen._compositor._dirty_regions:       # a frame that draws something
                    frames.append(screen.app.main.active_pane)
                return refresh(screen)
            monkeypatch.setattr(Screen, "_compositor_refresh", counting)
            shown = set()
            for _ in range(tabs):
                frames.clear()
                await pilot.press("ctrl+n")
                await pilot.pause(0.2)
                shown.add(app.main.active_pane)
                assert frames == [app.main.active_pane]
            assert len(shown) == tabs
    run(go())


def test_a_growing_event_list_sets_its_scrollbars_without_laying_the_screen_out(monkeypatch):
    def events(start: int, count: int) -> list[Event]:
        return [Event(seq, seq * 10, 0, 0, 0, "hypercall", {"name": "sched_op", "nr": 29})
                for seq in range(start, start + count)]

    class OneList(App):
        def compose(self):
            yield EventList(classes="log-list")

    async def go():
        app = OneList()
        async with app.run_test(size=(60, 12)) as pilot:
            lst = app.query_one(EventList)
            lst.add(events(0, 5))
            await pilot.pause()
            assert not lst.show_vertical_scrollbar
            layouts: list[bool] = []
            layout = Screen._refresh_layout

            def counting(screen, size=None, scroll=False):
                if screen._layout_required or screen._layout_widgets:
                    layouts.append(scroll)
                return layout(screen, size, scroll)
            monkeypatch.setattr(Screen, "_refresh_layout", counting)
            lst.add(events(5, 20))                  # the scrollbar appears: one layout
            await pilot.pause()
            assert lst.show_vertical_scrollbar and len(layouts) >= 1
            for start in (25, 40, 55):              # more rows: scrollbars only
                layouts.clear()
                lst.add(events(start, 15))
                await pilot.pause()
                assert layouts == []
                assert lst.virtual_size.height == start + 15
                assert lst.vertical_scrollbar.window_virtual_size == start + 15
                assert lst.scroll_y == lst.max_scroll_y > 0         # still following the newest
                assert lst.render_line(lst.scrollable_content_region.height - 1).text.startswith(
                    f"#{start + 14:<6}")
    run(go())
