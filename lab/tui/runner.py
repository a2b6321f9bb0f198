"""The simulation thread behind the screen.

The runner owns the session: only its thread calls Session methods that run or
change the machine. The screen sends it requests (run, pause, step, a command
line...) and, about thirty times a second, collects three things from it:

* trace events, from a bounded ``deque`` that the trace listener appends to
  (when the screen falls behind, the oldest are dropped; the trace itself
  keeps every event);
* replies to requests (command output, errors, "breakpoint hit");
* the latest :class:`StateView`, a plain snapshot of what the panes show,
  built on the simulation thread so the screen never reads a machine that is
  changing under it.

By default the screen runs this runner in a process of its own
(``sim_process.py``), which sends what it collects across in batches; with
``XENLAB_SIM_THREAD=1`` (and in the replay screen) it is a thread of the
screen's process.

Nothing here imports Textual: the runner can be driven and tested headless.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import UserError
from ..session import commands
from ..session.commands import Call, where_line
from ..session.eventspec import AnyEvent, AnyOf
from ..session.view import StateView, build_view

__all__ = ["AnyEvent", "AnyOf", "Runner", "where_line"]

#: Instructions per screen tick at each speed; ``None`` is full speed.
SPEEDS: tuple[int | None, ...] = (1, 10, 100, 1_000, 10_000, 100_000, None)
DEFAULT_SPEED = len(SPEEDS) - 1
TICK = 1 / 30                      # seconds between screen refreshes
#: At full speed the registers change faster than anyone can read: the state
#: panes are redrawn less often there, which leaves the time to the simulator
#: (measured with benchmarks/tui_responsiveness.py on a 200x50 screen: at ten a
#: second the screen's drawing took a quarter of the interpreter from the
#: simulation; at five, with the other savings, the simulator keeps over 70% of
#: its headless speed while the learner moves between panes).
FULL_SPEED_VIEW_INTERVAL = 1 / 5
#: ... and the logs at ten a second: the events of a machine running flat out pass too fast
#: to read, and each tick's frame takes the interpreter from the simulation (on a 2-core
#: computer shared with other work, every hand-over also waits for the other thread to be
#: scheduled). Keys are answered at once whatever the tick.
FULL_SPEED_TICK = 1 / 10
EVENT_BUFFER = 8192                # events kept for the screen between two ticks
FULL_SPEED_SLICE = 0.006           # seconds of simulation between looks at the request queue
INPUT_HOLD = 0.06                  # seconds the simulation gives way after a key press or click
UNTIL_LIMIT = 200_000_000          # instructions an ``until`` runs before giving up

# Runner modes.
BOOTING, PAUSED, RUNNING, STOPPED, NO_MACHINE, CRASHED = (
    "booting", "paused", "running", "stopped", "no machine", "simulator error")


def speed_label(index: int) -> str:
    n = SPEEDS[index]
    return "full speed" if n is None else f"{n:,} insn/tick"


@dataclass(frozen=True)
class Reply:
    """A line (or lines) for the command output: ``kind`` is out, err, info or echo."""
    kind: str
    text: str


@dataclass
class _Job:
    """What the sim thread is doing when it is not paused."""
    kind: str                          # "run", "step", "until"
    left: int | None = None            # instructions still to run (None: no limit)
    spec: Any = None                   # for "until"
    label: str = ""
    done: int = 0
    chunk: int | None = None           # the instructions per tick it has run at (None: not yet)
    steps: int = 0                     # a step job: steps taken since the session was last told
    timed: bool = False                # ran in timed slices (a Xen host at full speed)


@dataclass
class Stats:
    """Counters the benchmark and the status bar read."""
    events_seen: int = 0
    snapshots: int = 0
    chunks: int = 0
    sim_seconds: float = 0.0           # wall time spent inside the simulator
    instructions: int = 0              # instructions run by jobs
    extra: dict[str, Any] = field(default_factory=dict)


class Controls(ABC):
    """What the screen asks of a runner, whichever kind: each request goes to the simulation
    (``request``), which handles them in order. Collected from it, the same on every kind:
    ``events``, ``replies``, ``view``, ``mode``, ``job_label``, ``speed``, ``stats``, ``history``,
    ``error``, ``xen``, ``stop_event`` and ``booted``. Each kind says how a request reaches
    its simulation (a queue on a thread, a pipe to a process)."""

    events: deque
    replies: deque
    mode: str
    speed: int
    #: The open lesson's tutor where it lives in this process (a thread runner); the screen
    #: itself reads ``lesson_state()``, which every kind gives.
    tutor: Any = None

    @abstractmethod
    def request(self, *req: Any) -> None: ...

    @abstractmethod
    def set_speed(self, index: int) -> None: ...

    @abstractmethod
    def _quiet(self) -> bool:
        """Every request handled, the simulation paused and its latest view published."""

    @property
    def alive(self) -> bool:
        """Whether the simulation is still there to take requests (after an internal error
        too: ``reset`` starts its machine again). A thread always is."""
        return True

    @property
    def busy(self) -> bool:
        """Whether a job (run, step, until) is in progress."""
        return self.mode == RUNNING

    def submit(self, call: Call) -> None:
        """A parsed command line for the machine: a timed one becomes a job, the rest run at once."""
        self.request("call", call)

    def command(self, line: str) -> None:
        """Parse and submit a command line (a mistake becomes an error reply)."""
        self.request("line", line)

    def run(self, budget: int | None = None) -> None:
        self.command("run" if budget is None else f"run {budget}")

    def pause(self) -> None:
        self.request("pause")

    def toggle(self) -> None:
        self.request("toggle")

    def step(self, n: int = 1) -> None:
        self.command("step" if n == 1 else f"step {n}")

    def until(self, spec: Any) -> None:
        self.command(f"until {spec}")

    def focus(self, spec: str | None) -> None:
        """Focus ``DOM[.VCPU]`` (by id or name); ``None`` lists what can be focused."""
        self.command("focus" if spec is None else f"focus {spec}")

    def focus_next(self) -> None:
        """Focus the next domain (on bare metal, the next CPU)."""
        self.command("focus next")

    def walk(self, addr: int | None) -> None:
        self.request("walk", addr)

    def lesson_act(self, action: str, arg: str = "") -> None:
        """A lesson action, done by the tutor on this thread: each is an input of the session
        (recorded, in order with the others), next/prev/goto mark the timeline, and
        reset/restart take the machine back in time, as every trip in time happens here."""
        self.request("lesson_act", action, arg)

    def mark(self) -> None:
        """A bookmark without a name: the first free one of m1, m2 ... (as the mark command,
        so it is recorded and replayed like a typed one)."""
        self.request("mark")

    def faster(self) -> None:
        self.set_speed(self.speed + 1)

    def slower(self) -> None:
        self.set_speed(self.speed - 1)

    @property
    def speed_label(self) -> str:
        return speed_label(self.speed)

    def drain_events(self, limit: int) -> list:
        """Up to ``limit`` of the oldest buffered events (thread-safe popleft)."""
        out = []
        pop = self.events.popleft
        try:
            for _ in range(limit):
                out.append(pop())
        except IndexError:
            pass
        return out

    def drain_replies(self) -> list[Reply]:
        out = []
        try:
            while True:
                out.append(self.replies.popleft())
        except IndexError:
            pass
        return out

    def settled(self) -> bool:
        """Paused (or stopped), every request handled, nothing left for the screen to collect."""
        return (self._quiet() and not self.events and not self.replies)


class Runner(Controls):
    """Runs a session on its own thread and hands the screen what it needs."""

    def __init__(self, session: Any = None, *, factory: Callable[[], Any] | None = None,
                 opener: Callable[[str], Any] | None = None,
                 buffer: int = EVENT_BUFFER, speed: int = DEFAULT_SPEED) -> None:
        if session is None and factory is None:
            raise ValueError("a Runner needs a session or a factory")
        self.session = session
        self._factory = factory
        #: Builds the session for ``open PATH`` when no machine is loaded.
        self._opener = opener or _open_session
        self.events: deque = deque(maxlen=buffer)
        self.replies: deque[Reply] = deque(maxlen=2000)
        self.view: StateView | None = None
        self.mode = BOOTING
        self.job_label = ""
        self.speed = speed
        self.stats = Stats()
        #: Bumped when time travel puts the machine at another time (the logs start again).
        self.history = 0
        self.error: str | None = None        # last simulator error (one line)
        self.last_traceback: str | None = None
        self.walk_addr: int | None = None
        #: Whether the machine is a Xen host (known once it has booted).
        self.xen = False
        #: The event the last until or breakpoint stopped at: the logs select it.
        self.stop_event: Any = None
        #: A lesson's tutor, made with the machine on this thread: the factory returns
        #: (session, tutor) for a lesson (lab/tui/launch.py).
        self.tutor: Any = None
        #: Set once the boot is over (the machine built, or the reason it could not be).
        self.booted = threading.Event()
        self._requests: queue.Queue = queue.Queue()
        self._submitted = 0                  # requests put (screen thread) ...
        self._handled = 0                    # ... and handled (sim thread)
        self._job: _Job | None = None
        self._gen = 0
        self._dirty = True
        self._last_publish = 0.0
        # Instructions per slice at full speed, per kind of job (until single-steps, so is slower).
        self._chunks = {"run": 2_000, "step": 500, "until": 500}
        self._hold_until = 0.0
        self._host_idle = False
        self._before: dict[str, Any] | None = None
        self._thread: threading.Thread | None = None
        self._quit = False
        self.idle = threading.Event()        # set while the sim thread waits for a request

    # -- screen side ---------------------------------------------------------
    def start(self) -> None:
        """Start the simulation thread (once; the machine boots there first)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._main, name="xenlab-sim", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        """Stop the simulation and close the session's recording (its end line: complete)."""
        self._quit = True
        self._requests.put(("quit",))
        if self._thread is not None:
            self._thread.join(timeout)
        if self.session is not None:
            from ..session.recorder import stop_recording
            stop_recording(self.session)

    #: Whether the simulation runs in a process of its own (lab/tui/sim_process.py).
    separate_process = False

    @property
    def recorder(self) -> Any:
        """The session's live recording, or None (also before the machine is built)."""
        return self.session.recorder if self.session is not None else None

    @property
    def time_machine(self) -> Any:
        """The session's time machine, or None (also before the machine is built)."""
        return self.session.time_machine if self.session is not None else None

    @property
    def recording(self) -> bool:
        """Whether the session is being recorded (the status bar's indicator)."""
        rec = self.recorder
        return rec is not None and rec.active

    @property
    def time_travel(self) -> bool:
        """Whether the machine can go back in time (a lesson restarts through it)."""
        return self.time_machine is not None

    def lesson_state(self) -> Any:
        """What the lesson panel shows (a StepState), or None with no lesson (or not yet)."""
        return self.tutor.state() if self.tutor is not None else None

    def request(self, *req: Any) -> None:
        self._submitted += 1
        self._requests.put(req)

    def set_speed(self, index: int) -> None:
        self.speed = max(0, min(len(SPEEDS) - 1, index))

    def give_way(self, seconds: float = INPUT_HOLD) -> None:
        """Let the screen have the CPU for a moment (it has input to answer).

        Python runs one thread at a time; while the simulation runs flat out the
        screen would otherwise share the interpreter with it in 5 ms turns, and
        a key press could take several turns to show.
        """
        self._hold_until = time.monotonic() + seconds

    def resume(self) -> None:
        """The screen has answered: the simulation may have the CPU back, at once (it waits
        for a request while it gives way, so one wakes it)."""
        if self._hold_until:
            self._hold_until = 0.0
            self.request("resume")

    def _quiet(self) -> bool:
        # Order matters: the sim thread clears ``idle`` when it takes a request and sets it
        # again only after publishing the view, so ``idle`` is read last. Read first, it
        # could still be set from before a request that then ran and finished while the
        # counters were read, and the view would not show that run yet.
        handled = self._handled == self._submitted and self.mode not in (RUNNING, BOOTING)
        return handled and self.idle.is_set()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until the sim thread has handled every request and is paused (tests)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._quiet():
                return True
            if self.idle.wait(0.01):
                time.sleep(0.002)    # set from before the request, maybe: give the sim thread a turn
        return False

    # -- sim thread ------------------------------------------------------------
    def _reply(self, kind: str, text: str) -> None:
        if text:
            self.replies.append(Reply(kind, text))

    def _listen(self, ev: Any) -> None:
        self.stats.events_seen += 1
        self.events.append(ev)

    def _main(self) -> None:
        booted = False
        while True:
            try:
                if not booted:
                    booted = True
                    self._boot()
                self._loop()
                return
            except Exception as exc:   # the simulator itself failed: show it, never a traceback
                self._crashed(exc)
                if not self._wait_for_reset():
                    return

    def _settle(self) -> None:
        """The simulation has handled every request and waits for the next one."""
        self.idle.set()

    def _wait_for_reset(self) -> bool:
        """After an internal error: answer every request with what to do, until ``reset``
        (which goes back to the machine's start) or quit. True to carry on."""
        while not self._quit:
            self._settle()
            req = self._requests.get()
            if req[0] == "quit":
                self._quit = True
                return False
            if _is_reset(req) and self.session is not None:
                self.mode = PAUSED
                self.error = None
                try:
                    self._handle(req)
                except Exception as exc:
                    self._crashed(exc)
                    continue
                if self.mode != CRASHED:
                    return True
                continue
            self._reply("err", f"the simulator stopped with an internal error ({self.error}); "
                               "'reset' starts the machine again from its start")
            self._handled += 1
        return False

    def _loop(self) -> None:
        while not self._quit:
            if self._job is None or self.mode != RUNNING:
                self._publish(force=True)
                self._settle()
                req = self._requests.get()
                self.idle.clear()
                self._handle(req)
            else:
                self._drain_requests()
                hold = self._hold_until - time.monotonic()
                if hold > 0:
                    try:                 # wait, but wake at once for a request (resume is one)
                        req = self._requests.get(timeout=hold)
                    except queue.Empty:
                        continue
                    self._handle(req)
                    continue
                if self._job is not None and self.mode == RUNNING and not self._quit:
                    self._work()
                    self._publish()

    def _crashed(self, exc: BaseException) -> None:
        """The simulator itself failed: say what failed and what to do next (``reset``).

        What went wrong first, the mode last: the screen thread may read them as soon
        as it sees CRASHED.
        """
        self._job = None
        self.job_label = ""
        self.error = f"{type(exc).__name__}: {exc}"
        self.last_traceback = traceback.format_exc()
        self._dirty = True
        self.mode = CRASHED
        self._reply("err", f"simulator error: {self.error}")
        try:
            self._publish(force=True)
        except Exception:
            pass

    def _boot(self) -> None:
        try:
            if self.session is None:
                try:
                    made = self._factory()   # type: ignore[misc]
                except UserError as e:
                    self.error = str(e)
                    self.mode = NO_MACHINE
                    self._reply("err", f"{e}\n'open PATH' opens another machine (e.g. 'open default')")
                    return
                # a lesson's factory makes its tutor with the machine, here
                self.session, self.tutor = made if isinstance(made, tuple) else (made, None)
            self._attach()
        finally:
            self.booted.set()

    def _attach(self) -> None:
        """Follow the session's machine: its trace, and the machines time travel builds for it."""
        s = self.session
        self.xen = s.xen
        trace = s.machine.trace
        recent = trace.recent(self.events.maxlen)
        self.events.extend(recent)
        self.stats.events_seen = len(recent)
        trace.listeners.append(self._listen)
        tm = s.time_machine
        if tm is not None:
            tm.on_replace.append(self._machine_replaced)
            tm.on_travel.append(self._travelled)
        self.mode = STOPPED if s.machine.stopped else PAUSED

    def _machine_replaced(self, machine: Any) -> None:
        """Time travel built the session's machine afresh: follow its trace instead."""
        machine.trace.listeners.append(self._listen)
        self._dirty = True

    def _travelled(self) -> None:
        """After a trip in time the logs must show the trace as it was then: the screen
        clears its logs when ``history`` changes and takes these events again."""
        self.history += 1
        self.events.clear()
        for ev in self.session.machine.trace.recent(self.events.maxlen):
            self.events.append(ev)
        self._dirty = True

    def _note_job(self, job: "_Job | None") -> None:
        """Tell the session how far the screen's run went, and how it ran, so a recording
        and time travel can run it again exactly (docs/recordings.md)."""
        if job is None or self.session is None:
            return
        if job.kind == "step":
            # steps one at a time are the step command's, whatever the speed
            if job.steps:
                self.session.note_done("command", f"step {job.steps}")
                job.steps = 0
            return
        chunk = None
        if self.xen and not job.timed:
            # a Xen host's runs cut at an instruction count change how the domains interleave
            chunk = job.chunk
        self.session.note_run(chunk)

    def _drain_requests(self) -> None:
        while True:
            try:
                req = self._requests.get_nowait()
            except queue.Empty:
                return
            self._handle(req)

    def _handle(self, req: tuple) -> None:
        try:
            self._handle_one(req)
        finally:
            self._handled += 1

    def _handle_one(self, req: tuple) -> None:
        op = req[0]
        if op == "quit":
            self._quit = True
            return
        if self.session is None and op not in ("line", "call"):
            return
        if op == "resume":               # the screen has answered a key: nothing to do
            return
        try:
            getattr(self, "_op_" + op)(*req[1:])
        except UserError as e:
            self._reply("err", str(e))
        self._dirty = True

    # Requests.
    def _op_pause(self) -> None:
        if self._job is not None:
            self._finish("paused")

    def _op_toggle(self) -> None:
        if self._job is not None:
            self._finish("paused")
        else:
            self._op_line("run")

    def _op_line(self, line: str) -> None:
        call = commands.parse(line)
        if call is not None:
            self._op_call(call)

    def _op_call(self, call: Call) -> None:
        if self.session is None:
            self._no_machine(call)
            return
        if call.command.timed:
            self._timed(call)
            return
        self._mark_before()
        self._note_job(self._job)           # a command while running: the run so far comes first
        text = commands.perform(self.session, call)
        if call.name == "walk":
            self.walk_addr = call.args["addr"]
        self._reply("out", text)

    def _no_machine(self, call: Call) -> None:
        """With no machine, only ``open`` (and ``help``) can answer."""
        if call.name == "help":
            self._reply("out", commands.help_text(call.args["command"], screen=True))
            return
        if call.name != "open":
            raise UserError(f"no machine is loaded ({self.error}); 'open PATH' opens one (e.g. 'open default')")
        from ..paths import display
        from ..session.targets import check_kind, resolve_target
        path = resolve_target(call.args["path"])
        check_kind(path)
        self.session = self._opener(str(path))
        self.error = None
        self._attach()
        self.history += 1
        self._reply("out", f"opened {display(path)}")

    def _timed(self, call: Call) -> None:
        """Run, step or until as a job on this thread. A short step is noted as its command;
        a run or an until as the run it made, when it ends (``_note_job``), so a recording
        runs it again exactly whatever the speed it ran at on screen."""
        if self._job is not None:
            self._finish("interrupted")
        if self._refuse_if_stopped():
            return
        name, args = call.name, call.args
        if name == "step":
            self._step(args["n"] or 1)
        elif name == "run":
            budget = args["n"]
            self._start(_Job("run", budget, label="run" if budget is None else f"run {budget:,}"))
        else:
            spec = args["spec"].bind(self.session.machine)      # @DOM: the domain as this machine has it
            self._start(_Job("until", UNTIL_LIMIT, spec=spec, label=f"until {spec}"))

    def _step(self, n: int) -> None:
        self._mark_before()
        if n <= 64:          # short steps happen at once, whatever the speed
            self.session.note_input("command", f"step {n}")      # exactly what the step command does
            try:
                done = self.session.step(n)
            finally:
                self.session.input_applied()
            self.stats.instructions += done
            hit = self.session.break_hit
            msg = f"stepped {done}: {where_line(self.session.cpu_view())}"
            if hit is not None:
                self.stop_event = hit
                msg = f"breakpoint: {hit.summary()}\n" + msg
            self._reply("info", msg)
            self._after_job_checks()
            return
        self._start(_Job("step", n, label=f"step {n:,}"))

    def _op_lesson_act(self, action: str, arg: str) -> None:
        if self.tutor is None:
            raise UserError("no lesson is open: ctrl+l (or 'lessons') chooses one")
        if self._job is not None and action in ("reset", "restart"):
            self._finish("paused")
        self._reply("info", self.tutor.act(action, arg))

    def _op_mark(self) -> None:
        tm = self.session.time_machine
        taken = set(tm.markers) if tm is not None else set()
        n = 1
        while f"m{n}" in taken:
            n += 1
        self._op_line(f"mark m{n}")

    def _op_walk(self, addr: int | None) -> None:
        self.walk_addr = addr

    def _op_refresh(self) -> None:
        pass

    def _mark_before(self) -> None:
        self._before = self.session.cpu_view()

    def _refuse_if_stopped(self) -> bool:
        why = self.session.machine.stopped
        if why:
            self.mode = STOPPED
            self._reply("err", f"the machine has stopped ({why}); nothing more will run")
            return True
        return False

    def _start(self, job: _Job) -> None:
        self._mark_before()
        self._job = job
        self.job_label = job.label
        self.mode = RUNNING
        self._next_tick = time.monotonic()

    def _finish(self, why: str, extra: str = "") -> None:
        job = self._job
        self._note_job(job)
        self._job = None
        self.job_label = ""
        self.mode = STOPPED if self.session.machine.stopped else PAUSED
        if job is not None:
            view = self.session.cpu_view()
            head = f"{job.label}: {why} after {job.done:,} instructions"
            self._reply("info", "\n".join(x for x in (head, extra, where_line(view)) if x))
        self._dirty = True

    def _after_job_checks(self) -> None:
        if self.session.machine.stopped:
            self.mode = STOPPED

    def _progress(self) -> tuple:
        return tuple((r.cpu.icount, r.cpu.cycles) for r in self.session.vcpus())

    def _host_time(self) -> tuple:
        """A Xen host's pCPU clocks: they move on while dom0's services work or the pCPUs idle,
        when no vCPU runs an instruction."""
        return tuple(getattr(self.session.machine, "clock", ()) or ())

    def _work(self) -> None:
        """Run one slice of the current job."""
        job = self._job
        assert job is not None
        per_tick = SPEEDS[self.speed]
        n = self._chunks[job.kind] if per_tick is None else per_tick
        if job.left is not None:
            n = min(n, job.left)
        s = self.session
        before = self._progress()
        host_before = self._host_time()
        icount0 = sum(p[0] for p in before)
        t0 = time.perf_counter()
        hit = None
        found = None
        timed = per_tick is None and self.xen and job.kind in ("run", "until")
        if (job.chunk, job.timed) != (per_tick, timed) and job.done:
            self._note_job(job)             # the speed changed: the run so far ran the old way
        job.chunk, job.timed = per_tick, timed
        if timed:
            hit, found = self._timed_slice(job, FULL_SPEED_SLICE)
        elif job.kind == "run":
            hit = s.run(n)
        elif job.kind == "step":
            job.steps += s.step(n)
            hit = s.break_hit
        else:
            found = s.until(job.spec, limit=n)
            hit = s.break_hit if found is None else None
        dt = time.perf_counter() - t0
        ran = sum(p[0] for p in self._progress()) - icount0       # every vCPU's instructions
        self.stats.sim_seconds += dt
        self.stats.chunks += 1
        self.stats.instructions += max(ran, 0)
        job.done += max(ran, 0)
        if job.left is not None:
            job.left -= max(ran, 0) if timed else n
        if per_tick is None and dt > 0 and not timed:
            # Aim for slices of FULL_SPEED_SLICE seconds so a pause is taken promptly.
            chunk = self._chunks[job.kind] * FULL_SPEED_SLICE / dt
            self._chunks[job.kind] = int(max(100, min(200_000, chunk)))
        self._dirty = True
        if found is not None:
            self.stop_event = found
            self._finish("reached", f"#{found.seq} {found.summary()}")
            return
        if hit is not None:
            self.stop_event = hit
            self._finish("breakpoint", f"#{hit.seq} {hit.summary()}")
            return
        why = s.machine.stopped
        if why:
            self._finish("machine stopped", f"stopped: {why}")
            return
        if job.left is not None and job.left <= 0:
            if job.kind == "until":
                self._finish("gave up", f"no {job.spec} event in {UNTIL_LIMIT:,} instructions")
            else:
                self._finish("done")
            return
        # Stuck: nothing ran. A timed slice may end after a step that moved nothing on
        # (dom0's vCPU blocking), so on a Xen host only the host's own word counts.
        stuck = self._host_idle if timed else self._progress() == before
        if stuck and self._progress() == before and self._host_time() == host_before:
            # On Xen: every vCPU blocked and no timer armed (tickless guests at their prompts).
            self._finish("stuck", "every vCPU is blocked and no timer is armed: nothing happens until input"
                         if s.xen else "the CPU is halted and nothing will wake it")
            return
        if per_tick is not None:
            # Throttled: one slice per tick, but wake at once for a request.
            self._next_tick += TICK
            delay = self._next_tick - time.monotonic()
            if delay < -TICK:
                self._next_tick = time.monotonic()
            elif delay > 0:
                self._publish(force=True)
                try:
                    req = self._requests.get(timeout=delay)
                except queue.Empty:
                    return
                self._handle(req)

    def _timed_slice(self, job: _Job, seconds: float) -> tuple[Any, Any]:
        """About ``seconds`` of a run or until job on a Xen host; (breakpoint hit, event reached).

        A Xen host's run loop may stop between two vCPU runs and go on later as
        if it had never stopped: the scheduler picks the next vCPU from the
        pCPUs' clocks alone. Stopping after a number of instructions instead
        cuts a vCPU's run short and changes how the domains interleave, and a
        number chosen from the wall clock would make the machine's course
        depend on the speed of the computer. So on a Xen host a slice ends at
        such a boundary once its time is up, and ``run N`` and ``until`` end
        exactly where the same command ends headless.
        """
        s = self.session
        m = s.machine
        deadline = time.perf_counter() + seconds
        found: list[Any] = []
        listener = None
        if job.kind == "until":
            refs = s.vcpus()

            def listener(ev: Any) -> None:
                if not found and job.spec.matches(ev):
                    found.append(ev)
                    for r in refs:             # leave the CPU loop at the next block boundary
                        r.cpu.yield_now = True
            m.trace.listeners.append(listener)
        s.break_hit = None
        budget = job.left if job.left is not None else 1 << 62
        calls = [0]

        def stop() -> bool:
            calls[0] += 1           # at least one vCPU run or service step, however late the thread was
            if found or s.break_hit is not None:
                return True
            # Time is up, or the screen has a key to answer (give_way): stop at this boundary.
            return calls[0] > 1 and (time.perf_counter() >= deadline or self._hold_until > time.monotonic())
        try:
            self._host_idle = m.run(budget, stop=stop) is False     # nothing at all could run
        finally:
            if listener is not None:
                m.trace.listeners.remove(listener)
        if found:
            s.focus_event(found[0])
            return None, found[0]
        if s.break_hit is not None:
            s.focus_event(s.break_hit)
        return s.break_hit, None

    def _publish(self, force: bool = False) -> None:
        """Capture a StateView when something changed (at most once per tick unless forced)."""
        if not self._dirty or self.session is None:
            return
        now = time.monotonic()
        interval = FULL_SPEED_VIEW_INTERVAL if SPEEDS[self.speed] is None else TICK
        if not force and now - self._last_publish < interval:
            return
        self._last_publish = now
        self._dirty = False
        self._gen += 1
        self.stats.snapshots += 1
        self.view = build_view(self.session, self._gen, self.walk_addr, self._before)


def _is_reset(req: tuple) -> bool:
    """Whether a request is the ``reset`` command (typed, or parsed already)."""
    if req[0] == "line":
        return str(req[1]).split()[:1] == ["reset"]
    return req[0] == "call" and req[1].name == "reset"


def _open_session(path: str) -> Any:
    from ..session.live import open_session
    return open_session([path])
