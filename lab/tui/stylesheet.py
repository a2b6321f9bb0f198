"""The app's stylesheet: restyling a widget sets only the style values that changed.

Textual restyles a widget whenever one of its classes or pseudo-classes changes
(the focus moving, a pane's ``-focused`` or ``-active`` class) by setting every
style value it resolves for the widget again, changed or not. Most values
ignore being set to what they already are, but the scrollbar colours refresh
the widget's scrollbars every time they are set. Every focus change thus redrew
the scrollbars of the widgets gaining and losing the focus and of every widget
inside them, in a frame of their own after the frame that answered the key
(and around them the whole band of the screen between those scrollbars).
Setting only the values that differ ends in the same styles, with nothing
refreshed that did not change.
"""

from __future__ import annotations

from typing import Any

from textual.css.stylesheet import Stylesheet


class LabStylesheet(Stylesheet):
    """Textual's stylesheet, except that applying rules leaves unchanged values alone."""

    @classmethod
    def replace_rules(cls, node: Any, rules: Any, animate: bool = False) -> None:
        base = node.styles.base
        current = base._rules
        if animate and ("transitions" in current or "transitions" in rules):
            # A rule with a transition may start (or be in) an animation: Textual's own way.
            super().replace_rules(node, rules, animate=animate)
            return
        get_new = rules.get
        for key in current.keys() | rules.keys():
            value = get_new(key)
            # Read now, not before the loop: what base holds after the values set so far.
            if current.get(key) != value:
                setattr(base, key, value)
        node.notify_style_update()

    def copy(self) -> LabStylesheet:
        # Textual copies the stylesheet to read changed CSS files (``textual run --dev``).
        stylesheet = LabStylesheet(variables=self._variables.copy())
        stylesheet.source = self.source.copy()
        return stylesheet
