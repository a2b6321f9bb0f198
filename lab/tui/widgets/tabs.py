"""The pane tabs: Textual's Tabs, with the underline moved at once.

The stock underline slides to the new tab over 0.3 s, some ten frames; with the
machine running flat out those frames take the interpreter from the simulation
each time a learner switches panes (measured at 120x40: a tab switch drew ten
to thirteen frames and cost about 50 ms of the screen's CPU; now two frames
and 40 ms).
"""

from __future__ import annotations

from textual.widgets import Tabs


class PaneTabs(Tabs):
    def _highlight_active(self, animate: bool = True) -> None:
        super()._highlight_active(animate=False)
