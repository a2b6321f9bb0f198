"""The screen's keys and its own commands, as data.

The bindings, the command palette, the completion list and the help text all
read these tables, so a key or command is declared once.
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


@dataclass(frozen=True)
class ScreenCommand:
    name: str
    usage: str
    summary: str


#: Commands the screen handles itself (the rest go to the lab's command language).
SCREEN_COMMANDS: tuple[ScreenCommand, ...] = (
    ScreenCommand("pause", "pause", "pause the running machine"),
    ScreenCommand("speed", "speed [faster|slower|max|N]",
                  "show or set the speed: instructions per screen tick, or max"),
    ScreenCommand("filter", "filter [calls|io] [kind KIND|domain DOM|clear]",
                  "narrow the hypercall log (calls) or device I/O log (io) to one kind or domain"),
    ScreenCommand("theme", "theme [dark|light|NAME]", "switch the colour theme"),
    ScreenCommand("clear", "clear", "clear the command output"),
    ScreenCommand("quit", "quit", "leave the lab"),
    ScreenCommand("lessons", "lessons", "choose a guided lesson"),
    ScreenCommand("lesson", "lesson hint|solution|reset|restart|next|prev|goto N",
                  "act on the open lesson: the next hint, the solution, begin the step again ..."),
    ScreenCommand("answer", "answer CHOICE|NUMBER", "answer the lesson step's question"),
)

#: Lab commands whose running the screen takes over, so they can be paused and
#: run at the chosen speed on the simulation thread.
TIMED_COMMANDS = ("run", "step", "until")
