"""The screen's keys and its own commands, as data.

The bindings, the command palette and the help text all read this table, so
a key is declared once (commands, the screen's own too, are declared once in
the command language, lab/session/commands.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Action:
    id: str            # binding id (rebindable through a keymap)
    key: str
    action: str        # App action name
    label: str         # short Footer text
    tooltip: str       # what it does, in a sentence
    show: bool = True  # in the Footer
    group: str = ""    # Footer group (keys shown together under one label)


#: Footer groups by name.
GROUPS = {"speed": "Speed"}

ACTIONS: tuple[Action, ...] = (
    Action("help", "f1", "help", "Help", "Open the help screen: panes, keys and commands"),
    Action("command_line", "f2", "command_line", "Prompt", "Move to the command line, or back to the panes",
           show=False),
    Action("slower", "f3", "slower", "Slower", "Run fewer instructions per screen tick", group="speed"),
    Action("faster", "f4", "faster", "Faster", "Run more instructions per screen tick (up to full speed)",
           group="speed"),
    Action("run", "f5", "run", "Run", "Run the machine until you pause it, a breakpoint or a stop"),
    Action("pause", "f5", "pause", "Pause", "Pause the running machine"),
    Action("step", "f6", "step", "Step", "Execute one instruction"),
    Action("step_event", "f7", "step_event", "Event", "Run until the next trace event of any kind"),
    Action("until_xen", "f8", "until_xen", "→Xen",
           "Run until the next hypercall or VM exit (on bare metal: until the machine stops)"),
    Action("next_domain", "f9", "next_domain", "Domain", "Focus the next domain: every pane follows it"),
    Action("next_pane", "ctrl+n", "next_pane", "Pane", "Show the next pane (tabs) or focus it (grid)"),
    Action("toggle_theme", "ctrl+t", "toggle_theme", "Theme", "Switch between the dark and light themes",
           show=False),
    Action("lessons", "ctrl+l", "lessons", "Lessons", "Choose a guided lesson (opens it on a fresh machine)",
           show=False),
    Action("lesson_panel", "ctrl+g", "lesson_panel", "Lesson",
           "Move to the lesson panel (h hint, s solution, n next ...), or back", show=False),
)
