"""The key bar: Textual's Footer, rebuilt only when the keys it shows change.

The stock Footer rebuilds its keys whenever the focus moves. Most moves here
do not change which keys are shown, and a rebuild mounts a dozen widgets:
skipping those keeps the screen quick while the machine runs.
"""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


class KeyFooter(Footer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._signature: tuple | None = None

    def bindings_changed(self, screen: Screen) -> None:
        if not screen.app.app_focus:
            super().bindings_changed(screen)
            return
        signature = tuple((key, b.action, b.description, enabled)
                          for key, (_, b, enabled, _) in screen.active_bindings.items() if b.show)
        if signature == self._signature and self._bindings_ready:
            return
        self._signature = signature
        super().bindings_changed(screen)

    def watch_show_command_palette(self, show: bool) -> None:
        # The stock Footer draws the palette hint only when it next rebuilds its keys.
        if self.is_mounted:
            self.call_later(self.recompose)
