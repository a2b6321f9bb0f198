"""The pane tabs: Textual's Tabs, with the underline moved at once.

The stock underline slides to the new tab over 0.3 s, some ten frames; with the
machine running flat out those frames take the interpreter from the simulation
each time a learner switches panes (measured at 120x40: a tab switch drew ten
to thirteen frames and cost about 50 ms of the screen's CPU; now two frames
and 40 ms). Without the slide, Textual still moves the underline after the next
refresh, a frame of its own; when the tabs are already laid out (a switch, not
a resize) it is moved in the frame that shows the new tab.
"""

from __future__ import annotations

from textual.css.query import NoMatches
from textual.widgets import Tab, Tabs


class PaneTabs(Tabs):
    def _highlight_active(self, animate: bool = True) -> None:
        super()._highlight_active(animate=False)     # after the next refresh, as laid out then
        try:
            tab = self.query_one("#tabs-list > Tab.-active", Tab)
        except NoMatches:
            return
        region = tab.virtual_region.shrink(tab.styles.gutter)
        if region.width:
            underline = self.query_one("Underline")   # by type name: the class is private to Textual
            underline.highlight_start, underline.highlight_end = region.column_span
