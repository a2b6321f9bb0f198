"""The xenlab app: wires the runner (the simulation, in its own process or thread) to the screen.

``make_app`` builds the app without running it, so tests, snapshot modules
and the ``xenlab`` command all get the same app.

About thirty times a second ``pump`` drains the runner's event buffer into
the log panes (one batch per pane), writes replies to the command output and,
when the runner has published a new StateView, redraws the state panes, all
under one ``batch_update``.
"""

from __future__ import annotations

import gc
import math
import shlex
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, ClassVar

from textual import events
from textual.app import App
from textual.binding import Binding
from textual.content import Content
from textual.widgets import Static

from ..errors import UserError
from ..paths import display
from ..session import commands
from ..session.commands import REGISTRY, Call
from ..session.view import StateView
from ..trace import KINDS
from .actions import ACTIONS, GROUPS
from .launch import make_runner
from .runner import BOOTING, CRASHED, FULL_SPEED_TICK, NO_MACHINE, PAUSED, RUNNING, SPEEDS, STOPPED, TICK, Runner
from .screens.main import MainScreen
from .state import CALL_KINDS, IO_KINDS, LOG_ROWS, console_choice
from .stylesheet import LabStylesheet
from .themes import readable
from .widgets.commandline import CommandLine
from .widgets.domains import DomainTree
from .widgets.lesson import LessonPanel
from .widgets.logs import CallsPane, DevicePane, route
from .widgets.output import OutputLog
from .widgets.text import Text as TextView

DARK, LIGHT = "textual-dark", "textual-light"
#: The panes drawn from the StateView (the logs are fed events by the pump instead).
VIEW_PANES = ("domains", "cpu", "pages", "devio")
TIME_ACTIONS = ("run", "pause", "run_pause", "step", "step_event", "until_xen")
_GROUPS = {name: Binding.Group(label, compact=True) for name, label in GROUPS.items()}


def status_content(runner: Runner, view: StateView | None, shown: int, width: int = 200) -> Content:
    """The status bar: state, speed, simulated time, instructions, breakpoints, events."""
    compact = width < 110
    mode = runner.mode
    style = {RUNNING: "$text-success bold", PAUSED: "$text-warning bold", STOPPED: "$text-error bold",
             NO_MACHINE: "$text-error bold", CRASHED: "$text-error bold", BOOTING: "$text-muted"}.get(mode, "bold")
    label = mode
    if mode == RUNNING and runner.job_label and runner.job_label != "run":
        label = f"running: {runner.job_label}"
    elif mode == STOPPED and view is not None and view.stopped:
        label = f"stopped: {view.stopped}"
    if compact and len(label) > 28:
        label = label[:27] + "…"
    sep = " │ "
    speed = runner.speed_label
    parts: list[Any] = [(f" ● {label}", style), sep]
    parts += [speed.replace(" insn/tick", "/tick").replace("full speed", "full")] if compact else \
        [("speed ", "$text-muted"), speed]
    if view is not None:
        cpu = view.cpu
        # On a Xen host: the host's clock (its furthest pCPU's, Xen's NOW()) and every vCPU's
        # instructions; the CPU pane shows the focused vCPU's own (widgets/cpu.py time_parts).
        host = view.host_cycles is not None
        cycles = view.host_cycles if host else cpu["cycles"]
        insns = view.host_insns if view.host_insns is not None else cpu["icount"]
        label = ("host clk " if compact else "host clock ") if host else ("cyc " if compact else "cycle ")
        parts += [sep, (label, "$text-muted"), f"{cycles:,}"]
        if view.cpu_hz and not compact:
            parts.append((f" ({cycles / view.cpu_hz * 1e6:,.1f} µs)", "$text-muted"))
        parts += [sep, ("host insn " if host and not compact else "insn ", "$text-muted"), f"{insns:,}"]
        if view.breakpoints and not compact:
            parts += [sep, ("break ", "$text-muted"), ", ".join(view.breakpoints)]
    if runner.recording:
        parts += [sep, ("● rec", "$text-error bold")]
    seen = runner.stats.events_seen
    parts += [sep, ("ev " if compact else "events ", "$text-muted"), f"{seen:,}"]
    dropped = seen - shown - len(runner.events)
    if dropped > 0 and not compact:
        parts.append((f" ({dropped:,} only in the trace)", "$text-muted"))
    return Content.assemble(*parts)


def key_names() -> tuple[tuple[str, str], ...]:
    """(key, label) of every key the screen answers, for help."""
    keys = [(a.key.upper() if a.key.startswith("f") else a.key, a.label) for a in ACTIONS]
    return tuple(keys + [("ctrl+b", "back"), ("ctrl+r", "record"), ("ctrl+o", "mark"),
                         ("ctrl+p", "palette"), ("?", "help")])


def help_listing(name: str | None = None) -> str:
    """``help`` on the screen: the lab's commands, the screen's own, and the keys."""
    return commands.help_text(name, screen=True, keys=() if name else key_names())


def _lab_commands() -> Any:
    # The palette, the help screen (Markdown) and the lesson picker load when first used:
    # none is on the first frame, and together they are about a fifth of the screen's imports.
    from .palette import LabCommands
    return LabCommands


class XenLab(App[None]):
    """The on-screen lab."""

    CSS_PATH = ["app.tcss", "main.tcss", "lesson.tcss"]
    TITLE = "xenlab"
    COMMANDS = App.COMMANDS | {_lab_commands}
    BINDINGS = [Binding(a.key, a.action, a.label, show=a.show, id=a.id, tooltip=a.tooltip,
                        group=_GROUPS.get(a.group)) for a in ACTIONS] + [
        Binding("question_mark", "help", "Help", show=False, id="help_key",
                tooltip="Open the help screen (when not typing a command)"),
        Binding("ctrl+right_square_bracket", "leave_console", "Leave console", id="leave_console",
                tooltip="Stop typing into the guest's console (as xl console's ctrl+])", priority=True),
        Binding("ctrl+b", "back", "Back", show=False, id="back",
                tooltip="Go back one instruction (the whole machine, as it was)"),
        Binding("ctrl+r", "toggle_record", "Record", show=False, id="toggle_record",
                tooltip="Stop recording the session, or record it (from its start) in the lab's data directory"),
        Binding("ctrl+o", "mark", "Mark", show=False, id="mark",
                tooltip="Set a bookmark here, named m1, m2 ... ('seek m1' comes back; 'mark' lists them)"),
    ]

    def __init__(self, runner: Runner, *, theme: str | None = None, subtitle: str = "",
                 tick: float = TICK, max_rows: int = LOG_ROWS, lesson: Any = None, progress: Any = None,
                 first_run: bool = False, freeze_after_start: bool = False) -> None:
        super().__init__()
        # Restyling sets only what changed (stylesheet.py): a focus change no longer
        # redraws the scrollbars of every widget it restyles.
        self.stylesheet = LabStylesheet(variables=self.get_css_variables())
        #: The open lesson (its tutor is made with the machine, on the simulation thread).
        self.lesson = lesson
        self.progress = progress
        self.first_run = first_run
        #: Once the first view is on screen, leave what exists then to the collector's
        #: permanent generation (``_freeze``; done once). For the lab's own process only.
        self.freeze_after_start = freeze_after_start
        self.runner = runner
        if theme:
            self.theme = theme
        self.sub_title = subtitle
        self.tick = tick
        self.max_rows = max_rows
        self._pump_timer: Any = None
        self._last_pump = 0.0
        self.events_shown = 0
        self.ticks = 0
        self._gen = 0
        self._mode = ""
        self._status_key: tuple = ()
        self._status_due = False
        #: The domain whose console the command line types into (``console DOM``), or None,
        #: and which of its consoles (``console -t pv|serial DOM``; None: its primary one).
        self.console_dom: str | None = None
        self.console_kind: str | None = None
        self._status_waited = 0
        self._history = 0
        self._host_key: tuple = ()
        #: What the command output shows, as (kind, text): the pane's plain record.
        self.transcript: deque[tuple[str, str]] = deque(maxlen=2000)
        self._command_pending: str | None = None
        self.view: StateView | None = None
        #: Panes out of sight when the last view came: drawn from it when they come back.
        self._stale_panes: set[str] = set()
        self.screen_error: Exception | None = None
        self._stop_shown: Any = None
        self.main = MainScreen(sorted(REGISTRY), sorted(KINDS), domains=self._domain_names,
                               composed=self._first_pump, shown=self.pane_shown)

    @property
    def tutor(self) -> Any:
        """The open lesson's tutor, once the runner has made it with the machine, where it lives
        in this process (a thread runner; else None: the screen shows ``lesson_state()``)."""
        return self.runner.tutor

    # -- lifecycle ----------------------------------------------------------------
    def get_css_variables(self) -> dict[str, str]:
        # Every theme's text keeps WCAG AA contrast on the lab's backgrounds (themes.py).
        variables = readable(super().get_css_variables())
        self.theme_variables = variables
        return variables

    def get_default_screen(self) -> MainScreen:
        return self.main

    def on_load(self) -> None:
        # The machine boots on its own thread while the screen is composed.
        self.runner.start()

    def on_mount(self) -> None:
        self._pump_timer = self.set_interval(self.tick, self._on_tick, name="pump")
        if self.lesson is not None:
            self.call_after_refresh(self._mount_lesson_panel)
        elif self.first_run:
            self.call_after_refresh(self.main.show_message,
                                    "new here? press ctrl+l for the lessons (xenlab lesson tour), or F1 for help")

    def _first_pump(self) -> None:
        # A machine booted while the screen loaded is on the first frame, not a tick later.
        if not self._exit and not self.ticks:
            self._pump_safely()

    def on_unmount(self) -> None:
        if self._pump_timer is not None:
            self._pump_timer.stop()
        self.runner.close()          # the recording gets its end line: it is complete

    def action_back(self) -> None:
        self.runner.command("back 1")

    def _domain_names(self) -> list[str]:
        view = self.runner.view
        return [d.name for d in view.domains] if view is not None else []

    def action_mark(self) -> None:
        """A bookmark without typing a name: the first free one of m1, m2 ... (the mark
        command does the rest, so it is recorded and replayed like a typed one)."""
        self.runner.mark()

    def on_event_list_travel(self, message: Any) -> None:
        """t or a double-click on a logged event: the whole machine to just after it happened."""
        self.runner.command(f"seek #{message.event.seq}")

    def action_toggle_record(self) -> None:
        if self.runner.recording:
            self.runner.command("record off")
        else:
            from ..session.live import default_recording_path
            self.runner.command(f"record on {shlex.quote(str(default_recording_path()))}")

    def _on_tick(self) -> None:
        if self._exit or not self.screen_stack or not self.main.is_mounted:
            return
        now = time.monotonic()
        if self.pump_due(now):
            self._last_pump = now
            self._pump_safely()

    def pump_due(self, now: float) -> bool:
        """Every tick, except while the machine runs flat out: then every FULL_SPEED_TICK."""
        r = self.runner
        if r.mode == RUNNING and SPEEDS[r.speed] is None:
            return now - self._last_pump >= FULL_SPEED_TICK - self.tick / 2
        return True

    def _pump_safely(self) -> None:
        try:
            self.pump()
        except Exception as exc:        # a drawing bug must not become a traceback on screen
            self.screen_error = exc
            try:
                self.main.show_message(f"screen error: {type(exc).__name__}: {exc}", "err")
            except Exception:
                pass

    def on_app_focus(self, event: events.AppFocus) -> None:
        # In a browser (xenlab serve) the page blurs the app before the screen has focused the
        # command line; when focus comes back with nothing focused, keys would go nowhere.
        if self.screen is self.main and self.main.focused is None and self.main.is_mounted:
            self.main.cmd().focus()

    async def on_event(self, event: events.Event) -> None:
        # Input first: the simulation gives way while the screen answers a key or click.
        if isinstance(event, (events.Key, events.MouseDown, events.MouseScrollDown,
                              events.MouseScrollUp)) and self.runner.busy:
            self.runner.give_way()
            await super().on_event(event)
            # Until the frame that shows the answer has been drawn (or INPUT_HOLD passes).
            self.call_after_refresh(self.runner.resume)
            return
        await super().on_event(event)

    # -- the pump -------------------------------------------------------------------
    def pump(self) -> None:
        """Move what the sim thread produced onto the screen (one batch per tick)."""
        self.ticks += 1
        r = self.runner
        if r.history != self._history:
            # time travel: the logs showed another time; they start again from its trace
            self._history = r.history
            self.main.query_one(CallsPane).list.clear()
            self.main.query_one(DevicePane).list.clear()
            self.events_shown = 0
        batch = r.drain_events(r.events.maxlen or 10_000)
        self.events_shown += len(batch)
        replies = r.drain_replies()
        view = r.view
        main = self.main
        with self.batch_update():
            names = tuple((d.domid, d.name) for d in view.domains) if view is not None else ()
            if (r.xen, names) != self._host_key:
                # Before the first rows are written: they name events with no domain "Xen" or "bare".
                self._host_key = (r.xen, names)
                for pane in (main.query_one(CallsPane), main.query_one(DevicePane)):
                    pane.set_host(r.xen, dict(names))
            if batch:
                # A log out of sight keeps the events and formats them when it is shown.
                visible = main.visible_panes()
                calls = route(batch, CALL_KINDS, self.max_rows)
                if calls:
                    main.query_one(CallsPane).add(calls, "calls" in visible)
                devs = route(batch, IO_KINDS, self.max_rows)
                if devs:
                    main.query_one(DevicePane).add(devs, "devio" in visible)
            for reply in replies:
                self._write_reply(reply.kind, reply.text)
            if r.stop_event is not self._stop_shown and r.stop_event is not None:
                # On a loaded machine the stop can arrive a tick before its event reaches the
                # log: look again on the next tick rather than leave the stop unselected.
                if self.show_stop(r.stop_event):
                    self._stop_shown = r.stop_event
            shown_view = False
            if view is not None and view.gen != self._gen:
                self._gen = view.gen
                self.show_view(view)
                shown_view = self._status_due = True
                if self.freeze_after_start:
                    self.freeze_after_start = False             # once, after the first view
                    self.call_after_refresh(self._freeze)
            status_key = (r.mode, r.job_label, r.speed, self.size.width)
            if status_key != self._status_key:
                self._status_key = status_key
                self._status_due = True
            if not r.busy and self.ticks % 6 == 0:
                self._status_due = True
            # The status follows the views (at most ten a second while running), one tick
            # later: drawn in the same frame as the panes, the status bar at the bottom
            # would make the frame's update region the whole screen, and every widget on
            # it would be drawn again. The first view redraws every pane anyway: the status
            # comes with it, so the first full frame is complete.
            if self._status_due and (not shown_view or self._status_waited or self._gen == 1):
                self._status_due = False
                self._status_waited = 0
                main.query_one("#status", TextView).show(
                    status_content(r, self.view, self.events_shown, self.size.width))
            elif self._status_due:
                self._status_waited += 1
            if self.lesson is not None and self.main.query(LessonPanel):
                state = r.lesson_state()
                if state is not None:
                    self.main.query_one(LessonPanel).show(state)
            if r.mode != self._mode:
                self._mode = r.mode
                self.refresh_bindings()
                if r.mode in (NO_MACHINE, CRASHED) and r.error:
                    self._stale_panes.discard("cpu")     # the error stays until the next view
                    main.query_one("#cpu-summary", TextView).show(
                        Content.styled(f"{r.mode}: {r.error}", "$text-error bold"))

    @staticmethod
    def _freeze() -> None:
        """Python's full collections walk every object the screen holds: the app, its widgets,
        the modules, the guests' sources (some 75,000 objects once the machine is shown), taking
        up to 130 ms (200 ms on a loaded computer) in which a key waits. What exists once the
        first view is drawn lives as long as the screen: frozen, the collector no longer walks
        it (a full collection then takes under 45 ms). Not in a process that runs other
        screens' tests: cycles left by those would never be freed."""
        gc.freeze()

    def show_stop(self, ev: Any) -> bool:
        """A run stopped at ``ev`` (until, F7/F8, a breakpoint): select it in its log, explained.
        False while the event has not reached its log yet.

        The runner has already focused the domain and vCPU where it fired, so the CPU pane shows
        its source line."""
        pane = self.main.query_one(CallsPane) if ev.kind in CALL_KINDS else \
            self.main.query_one(DevicePane) if ev.kind in IO_KINDS else None
        if pane is None:
            return True
        if not pane.filter.keep(ev):
            self.main.show_message(f"stopped at #{ev.seq} {ev.kind}: hidden by the log's filter "
                                   f"({pane.filter.describe()})")
            return True
        if pane.list.select_event(ev):
            return True
        # events reach the log in order: once a later one is there, this one never will
        return pane.list.newest_seq() > ev.seq

    def show_view(self, view: StateView) -> None:
        """Show a new StateView in the panes on screen; a pane out of sight (another tab)
        is drawn from the latest view when it comes back (``pane_shown``)."""
        self.view = view
        main = self.main
        main.query_one(CallsPane).images = main.query_one(DevicePane).images = view.images
        shown = set(main.visible_panes())
        self._stale_panes = {pid for pid in VIEW_PANES if pid not in shown}
        for pid in VIEW_PANES:
            if pid in shown:
                self._show_pane(pid, view)

    def pane_shown(self, pid: str) -> None:
        """A pane came into sight: bring it up to the latest view if it missed one, and
        a log up to the events it was given meanwhile (in the frame that shows it)."""
        if pid in ("calls", "devio"):
            self.main.query_one(CallsPane if pid == "calls" else DevicePane).list.catch_up()
        if pid in self._stale_panes and self.view is not None:
            self._stale_panes.discard(pid)
            self._show_pane(pid, self.view)

    def _show_pane(self, pid: str, view: StateView) -> None:
        main = self.main
        if pid in ("domains", "cpu", "pages"):
            main.query_one(f"#{pid}").show(view)
            return
        devio = main.query_one(DevicePane)
        cpu = view.cpu
        devio.show_io(view.io)
        if view.xen:
            dom = next((d for d in view.domains if d.domid == view.focus_dom), None)
            name = dom.name if dom is not None else cpu["label"]
            text, title = console_choice(view, name, self.console_kind if self.console_dom == name else None)
            devio.show_console((view.focus_dom, name, self.console_kind), text, title)
        else:
            devio.show_console((cpu["dom"], cpu["label"]), view.console)

    # -- output -----------------------------------------------------------------------
    def _write_reply(self, kind: str, text: str) -> None:
        self.transcript.append((kind, text))
        out = self.main.query_one("#output", OutputLog)
        colors = self.theme_variables
        style = {"err": colors.get("text-error", "red"), "echo": colors.get("text-accent", ""),
                 "info": colors.get("foreground", "")}.get(kind, "")
        lines = text.splitlines() or [""]
        out.add(lines, style + (" bold" if kind == "echo" else ""))
        self.main.show_message(text, kind)
        if kind in ("out", "err") and self._command_pending is not None:
            # A command's multi-line answer is shown where it can be read.
            pending, self._command_pending = self._command_pending, None
            if kind == "out" and self.main.layout_name != "wide" and "\n" in text:
                self.main.activate("pages" if pending == "walk" else "output")

    def error(self, text: str) -> None:
        self._write_reply("err", text)

    # -- commands -------------------------------------------------------------------------
    def on_input_submitted(self, event: Any) -> None:
        event.stop()
        line = event.value.strip()
        event.input.value = ""
        if not line:
            return
        self.main.cmd().history.add(line)
        self.submit_command(line)

    def prefill_command(self, text: str) -> None:
        cmd = self.main.cmd()
        cmd.value = text
        cmd.cursor_position = len(text)
        cmd.focus()

    def submit_command(self, line: str) -> None:
        """Run one command line as if typed; mistakes become a red message.

        In console mode (``console DOM``) the line is the guest's console input instead."""
        if self.console_dom is not None:
            self._write_reply("echo", f"{self.console_dom}> {line}")
            try:
                self._require_machine()
                self._command_pending = "console"
                kind = ["-t", self.console_kind] if self.console_kind else []
                call = commands.parse(shlex.join(["console", *kind, self.console_dom, line]))
                assert call is not None
                self.runner.submit(call)
            except UserError as e:
                self.error(str(e))
            return
        self._write_reply("echo", f"xen> {line}")
        try:
            call = commands.parse(line)
            if call is not None:
                self.dispatch(call)
        except UserError as e:
            self.error(str(e))

    def dispatch(self, call: Call) -> None:
        """One parsed command: the screen's own here, the rest to the simulation thread."""
        if call.command.screen:
            self.SCREEN_COMMANDS[call.name](self, **call.args)
            return
        if call.name == "help":
            self._command_pending = "help"
            self._write_reply("out", help_listing(call.args["command"]))
            return
        if call.name == "compare":
            self.run_compare(call)
            return
        attach = self._console_to_attach(call)
        # With no machine, 'open' loads one; after a simulator error, 'reset' starts it again.
        if not (call.name == "open" or call.name == "reset" and self.runner.mode == CRASHED):
            self._require_machine()
        if attach is not None:
            # "console [-t KIND] DOM" or "xl console [-t KIND] DOM": show what the guest wrote so
            # far, then the lines typed next go to that console of the guest, as with xl console.
            self._command_pending = "console"
            self.runner.submit(call)
            self.runner.focus(attach[0])
            self.enter_console(*attach)
            return
        self._command_pending = call.name
        self.runner.submit(call)

    def run_compare(self, call: Call) -> None:
        """compare runs fresh machines, one per mode, for seconds: in a worker, with progress,
        while the screen (and the learner's own machine) stays usable."""
        self._require_machine()
        # None when the simulation runs in a process of its own: compare never uses it
        session = self.runner.session

        def progress(i: int, n: int, mode: str) -> None:
            bar = "▰" * i + "▱" * (n - i)
            self.call_from_thread(self.main.show_message, f"compare {bar} mode {i} of {n}: {mode}")

        def work() -> None:
            # compare builds machines of its own and never touches the session's, so it is no
            # input of the session (nothing to replay); noting one from this thread would race
            # the simulation thread, which owns the session.
            try:
                text = call.command.run(session, **call.args, progress=progress)
            except UserError as e:
                self.call_from_thread(self.error, str(e))
                return
            except Exception as e:          # a bug in the lab: the screen goes on
                self.call_from_thread(self.error, f"compare: internal error in the lab ({type(e).__name__}: {e})")
                return
            self._command_pending = "compare"
            self.call_from_thread(self._write_reply, "out", text)
        self.run_worker(work, thread=True, exclusive=True, group="compare", name="compare")

    def _console_to_attach(self, call: Call) -> tuple[str, str | None] | None:
        """The domain (and console type) ``console [-t KIND] DOM`` or ``xl console [-t KIND] DOM``
        attaches to; None for any other command."""
        if call.name == "console" and call.args["dom"] is not None:
            words = [call.args["dom"], *(call.args["text"] or [])]
        elif call.name == "xl" and call.args["words"][:1] == ["console"]:
            words = list(call.args["words"][1:])
        else:
            return None
        kind = None
        if words[:1] == ["-t"] and len(words) >= 3:
            kind, words = words[1], words[2:]
            if kind not in commands.CONSOLE_TYPES:
                raise UserError("console type supported are: " + ", ".join(commands.CONSOLE_TYPES))
        if len(words) != 1 or self.view is None or not self.view.xen:
            return None                             # with text: one line typed, no attaching
        dom = words[0]
        match = next((d for d in self.view.domains if dom in (d.name, str(d.domid))), None)
        if match is None:
            raise UserError(f"no domain '{dom}' (xl list shows them)")
        return match.name, kind

    def enter_console(self, dom: str | None, kind: str | None = None) -> None:
        """Type into ``dom``'s console (``kind`` as xl console -t; None: its primary one) from
        the command line (None: back to lab commands)."""
        self.console_dom = dom
        self.console_kind = kind if dom is not None else None
        prompt = self.main.query_one("#prompt", Static)
        cmd = self.main.cmd()
        if dom is None:
            prompt.update("xen>")
            cmd.placeholder = CommandLine.PLACEHOLDER
            self.main.show_message("back to lab commands", "info")
        else:
            which = f"{kind} console" if kind else "console"
            prompt.update(f"{dom}>")
            cmd.placeholder = f"a line for {dom}'s {which} (Enter sends it; ctrl+] leaves)"
            self.main.show_message(f"typing into {dom}'s {which}: ctrl+] leaves", "info")
        self.refresh_bindings()

    def action_leave_console(self) -> None:
        if self.console_dom is not None:
            self.enter_console(None)

    def _require_machine(self) -> None:
        r = self.runner
        if r.mode == NO_MACHINE:
            raise UserError(f"no machine is loaded ({r.error}); 'open PATH' opens one (e.g. 'open default')")
        if r.mode == CRASHED:
            if not r.alive:                        # the simulation's process itself has ended
                raise UserError(f"the simulator stopped: {r.error}; 'quit' the screen and start the lab again")
            raise UserError(f"the simulator stopped with an internal error ({r.error}); "
                            "'reset' starts the machine again from its start")

    # -- the screen's own commands ----------------------------------------------------------
    def _screen_pause(self) -> None:
        self.runner.pause()

    def _screen_speed(self, speed: str | int | None) -> None:
        r = self.runner
        if speed == "faster":
            r.faster()
        elif speed == "slower":
            r.slower()
        elif speed in ("max", "full"):
            r.set_speed(len(SPEEDS) - 1)
        elif isinstance(speed, int):
            levels = [(abs(math.log10(s) - math.log10(speed)), i) for i, s in enumerate(SPEEDS) if s]
            r.set_speed(min(levels)[1])
        self._write_reply("info", f"speed: {r.speed_label}")

    def _screen_filter(self, log: str, what: str | None, value: str | None) -> None:
        target = self.main.query_one(DevicePane if log == "io" else CallsPane)
        f = target.filter
        try:
            if what == "clear":
                f.set_kind("all")
                f.set_dom("all")
            elif what == "kind":
                f.set_kind(value)
            elif what == "domain":
                f.set_dom(value)
        except ValueError as e:
            raise UserError(str(e)) from None
        target.apply_filter()
        self._write_reply("info", f"filter: {f.describe()}")

    def _screen_theme(self, name: str | None) -> None:
        if name is None:
            self._write_reply("info", f"theme: {self.theme}")
            return
        theme = {"dark": DARK, "light": LIGHT}.get(name, name)
        if theme not in self.available_themes:
            raise UserError(f"no theme '{name}' (try dark, light, or one of: "
                            f"{', '.join(sorted(self.available_themes))})")
        self.theme = theme
        self._write_reply("info", f"theme: {theme}")

    def _screen_clear(self) -> None:
        self.main.query_one("#output", OutputLog).clear()
        self.transcript.clear()

    def _screen_quit(self) -> None:
        self.exit()

    # -- lessons ---------------------------------------------------------------------------
    def _mount_lesson_panel(self) -> None:
        if not self.main.query(LessonPanel):
            # Before the message line: on a small screen it takes its rows in the flow, above
            # the command line and the footer, instead of lying over them (lesson.tcss).
            self.main.mount(LessonPanel(id="lesson"), before="#message")

    def _screen_lessons(self) -> None:
        self.action_lessons()

    def _screen_lesson(self, action: str, arg: str) -> None:
        self.lesson_action(action, arg)

    def _screen_answer(self, choice: str) -> None:
        self.lesson_action("answer", choice)

    def lesson_action(self, action: str, arg: str = "") -> None:
        """Hand a lesson action to the tutor (the one place they happen) and show its answer."""
        if self.lesson is None:
            raise UserError("no lesson is open: ctrl+l (or 'lessons') chooses one")
        if action == "restart" and not self.runner.time_travel:
            # No time machine: the screen opens the lesson again on a fresh machine.
            self.exit(result=("lesson", self.lesson.id))
            return
        # On the simulation thread, which owns the session: the action is an input of the
        # session (recorded in order), and reset/restart go back through its time machine.
        self.runner.lesson_act(action, arg)

    def on_lesson_panel_action(self, message: LessonPanel.Action) -> None:
        if message.action == "answer":
            self.prefill_command("answer ")
            return
        try:
            self.lesson_action(message.action)
        except UserError as e:
            self.error(str(e))

    def action_lessons(self) -> None:
        from .screens.lessons import LessonPicker
        if isinstance(self.screen, LessonPicker):
            return
        if self.runner.separate_process and self.progress.saving:
            # the lesson's tutor saved its progress in the simulation's process: read it again
            from ..lessons.progress import Progress
            self.progress = Progress(self.progress.path)

        def chosen(lesson_id: str | None) -> None:
            if lesson_id is not None:
                self.exit(result=("lesson", lesson_id))
        self.push_screen(LessonPicker(progress=self.progress), chosen)

    def action_lesson_panel(self) -> None:
        panels = self.main.query(LessonPanel)
        if not panels:
            self.main.show_message("no lesson is open: ctrl+l chooses one")
            return
        if panels.first().has_focus:
            self.main.cmd().focus()
        else:
            panels.first().focus()

    # -- messages from panes -------------------------------------------------------------
    def on_domain_tree_focus_requested(self, message: DomainTree.FocusRequested) -> None:
        if self.runner.mode not in (NO_MACHINE, CRASHED, BOOTING):
            self.runner.focus(message.spec)

    # -- actions ------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "leave_console":
            return self.console_dom is not None          # shown only in console mode
        if action in TIME_ACTIONS:
            mode = self.runner.mode
            if action == "run" and mode == RUNNING:
                return False          # F5 shows "Pause" instead
            if action == "pause":
                return mode == RUNNING
            if mode in (NO_MACHINE, CRASHED, BOOTING, STOPPED):
                return None
        return True

    def action_run_pause(self) -> None:
        self.runner.toggle()

    def action_run(self) -> None:
        self.runner.run(None)

    def action_pause(self) -> None:
        self.runner.pause()

    def action_step(self) -> None:
        self.runner.step(1)

    def action_step_event(self) -> None:
        self.runner.until("any")

    def action_until_xen(self) -> None:
        self.runner.until("hypercall,vmexit")

    def action_faster(self) -> None:
        self.runner.faster()
        self.main.show_message(f"speed: {self.runner.speed_label}")

    def action_slower(self) -> None:
        self.runner.slower()
        self.main.show_message(f"speed: {self.runner.speed_label}")

    def action_help(self) -> None:
        """Help, opening on the pane that has the focus (its text and its own keys)."""
        from .screens.help import HelpScreen, topic_page
        if isinstance(self.screen, HelpScreen):
            return
        topic = ""
        pane = self.main.focused_pane
        if pane is not None and pane.id:
            from .screens.main import PANES
            title = next((t for pid, t, _ in PANES if pid == pane.id), "")
            focused = self.main.focused
            keys = []
            for node in (focused.ancestors_with_self if focused is not None else ()):
                if node is self.main:
                    break
                keys += [(b.key, b.description) for b in getattr(node, "BINDINGS", ())
                         if isinstance(b, Binding) and b.description and b.show]
            topic = topic_page(title, keys) if title else ""
        self.push_screen(HelpScreen(topic))

    def action_command_line(self) -> None:
        cmd = self.main.cmd()
        if cmd.has_focus:
            self.main.focus_pane(self.main.visible_panes()[-1])
        else:
            cmd.focus()

    def action_next_domain(self) -> None:
        if self.runner.mode not in (NO_MACHINE, CRASHED, BOOTING):
            self.runner.focus_next()

    def action_next_pane(self) -> None:
        self.main.next_pane()

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT if self.current_theme.dark else DARK

    #: The screen's own commands (``screen=True`` in lab/session/commands.py), each with the
    #: method that does it; tests check that the two lists agree.
    SCREEN_COMMANDS: ClassVar[dict[str, Callable[..., None]]] = {
        "pause": _screen_pause,
        "speed": _screen_speed,
        "filter": _screen_filter,
        "theme": _screen_theme,
        "clear": _screen_clear,
        "quit": _screen_quit,
        "lessons": _screen_lessons,
        "lesson": _screen_lesson,
        "answer": _screen_answer,
    }


def describe_target(target: str | None) -> str:
    if target is None:
        return "scenario: machines/default.toml"
    try:
        from ..session.targets import resolve_target
        path = resolve_target(target)
    except UserError:
        return display(target)          # the screen says what is wrong with it
    kind = {".toml": "scenario", ".cfg": "guest config"}.get(path.suffix, "bare metal")
    return f"{kind}: {display(path)}"


def make_app(target: str | None = None, *, session: Any = None, theme: str | None = None,
             speed: int | None = None, tick: float = TICK, max_rows: int = LOG_ROWS, lesson: Any = None,
             seed: int = 0, progress: Any = None, first_run_hint: bool = False,
             record: str | Path | None = None, runner: Runner | None = None,
             freeze_after_start: bool = False) -> XenLab:
    """Build (not run) the lab app on ``session``, or on a machine built from ``target``,
    or on ``lesson``'s machine with its tutor. ``first_run_hint``: tell a learner with no
    progress yet where to start. ``record``: record the session into this file.
    ``runner``: one made already (``launch.start_runner``) for the same target or lesson,
    its machine maybe booted by now. ``freeze_after_start``: the lab's own process (``XenLab``).

    The machine is built on the simulation thread, so the screen appears at
    once; a bad target becomes a message on the screen.
    """
    from ..lessons.progress import Progress
    if progress is None:
        progress = Progress()
    if runner is None:
        runner = make_runner(target, session=session, lesson=lesson, seed=seed, progress=progress,
                             record=record, speed=speed)
    subtitle = f"lesson: {lesson.title}" if lesson is not None else describe_target(target)
    return XenLab(runner, theme=theme, subtitle=subtitle, tick=tick, max_rows=max_rows, lesson=lesson,
                  progress=progress, first_run=first_run_hint and not progress.lessons and progress.saving,
                  freeze_after_start=freeze_after_start)
