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

Nothing here imports Textual: the runner can be driven and tested headless.
"""

from __future__ import annotations

import queue
import shlex
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import UserError

#: Instructions per screen tick at each speed; ``None`` is full speed.
SPEEDS: tuple[int | None, ...] = (1, 10, 100, 1_000, 10_000, 100_000, None)
DEFAULT_SPEED = len(SPEEDS) - 1
TICK = 1 / 30                      # seconds between screen refreshes
#: At full speed the registers change faster than anyone can read: the state
#: panes are redrawn less often there, which leaves the time to the simulator.
FULL_SPEED_VIEW_INTERVAL = 1 / 10
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


class AnyEvent:
    """An event pattern that every event matches (``step to the next event``)."""

    def matches(self, ev: Any) -> bool:
        return True

    def __str__(self) -> str:
        return "any event"


class AnyOf:
    """Matches when one of several patterns does (``hypercall`` or ``vmexit``)."""

    def __init__(self, *specs: Any) -> None:
        self.specs = specs

    def matches(self, ev: Any) -> bool:
        return any(s.matches(ev) for s in self.specs)

    def __str__(self) -> str:
        return " or ".join(str(s) for s in self.specs)


@dataclass(frozen=True)
class VcpuInfo:
    """One line of the domains tree."""
    label: str
    dom: int | None
    vcpu: int
    spec: str               # what ``focus`` takes to select it
    state: str              # "running", "halted" or "stopped: why"
    cpl: int
    root: bool
    focused: bool


@dataclass(frozen=True)
class StateView:
    """Everything the state panes draw, captured at one instant on the sim thread."""
    gen: int
    vcpus: tuple[VcpuInfo, ...]
    cpu: dict[str, Any]
    source: tuple[tuple[int, str, bool], ...]
    tlb: tuple[Any, ...]
    walk: Any                         # a WalkResult, or None
    walk_lines: tuple[str, ...]
    walk_note: str                    # why there is no walk, or ""
    walk_requested: int | None        # the address asked for, None for rip
    console: str
    breakpoints: tuple[str, ...]
    images: dict[Any, tuple[Any, ...]]   # loaded images by domain, for mapping rip to a source line
    cpu_hz: int | None
    stopped: str | None
    #: The focused CPU as it was when the last step, run or command began: what
    #: the CPU pane compares against to highlight changed registers.
    before: dict[str, Any] | None = None


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


@dataclass
class Stats:
    """Counters the benchmark and the status bar read."""
    events_seen: int = 0
    snapshots: int = 0
    chunks: int = 0
    sim_seconds: float = 0.0           # wall time spent inside the simulator
    instructions: int = 0              # instructions run by jobs
    extra: dict[str, Any] = field(default_factory=dict)


def where_line(view: dict[str, Any]) -> str:
    """``bare metal: ring 0 root, rip 0x...: mov rax, 1`` for a cpu_view dict."""
    mode = "root" if view["root"] else "non-root"
    state = f" [{view['stopped']}]" if view["stopped"] else (" [halted]" if view["halted"] else "")
    return f"{view['label']}: ring {view['cpl']} {mode}, rip {view['rip']:#x}: {view['next']}{state}"


class Runner:
    """Runs a session on its own thread and hands the screen what it needs."""

    def __init__(self, session: Any = None, *, factory: Callable[[], Any] | None = None,
                 execute: Callable[[Any, str], str] | None = None,
                 buffer: int = EVENT_BUFFER, speed: int = DEFAULT_SPEED) -> None:
        if session is None and factory is None:
            raise ValueError("a Runner needs a session or a factory")
        self.session = session
        self._factory = factory
        self._execute = execute
        self.events: deque = deque(maxlen=buffer)
        self.replies: deque[Reply] = deque(maxlen=2000)
        self.view: StateView | None = None
        self.mode = BOOTING
        self.job_label = ""
        self.speed = speed
        self.stats = Stats()
        self.error: str | None = None        # last simulator error (one line)
        self.last_traceback: str | None = None
        self.walk_addr: int | None = None
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
        self._before: dict[str, Any] | None = None
        self._thread: threading.Thread | None = None
        self._quit = False
        self.idle = threading.Event()        # set while the sim thread waits for a request

    # -- screen side ---------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="xenlab-sim", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        self._quit = True
        self._requests.put(("quit",))
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def busy(self) -> bool:
        """Whether a job (run, step, until) is in progress."""
        return self.mode == RUNNING

    def request(self, *req: Any) -> None:
        self._submitted += 1
        self._requests.put(req)

    def run(self, budget: int | None = None) -> None:
        self.request("run", budget)

    def pause(self) -> None:
        self.request("pause")

    def toggle(self) -> None:
        self.request("toggle")

    def step(self, n: int = 1) -> None:
        self.request("step", n)

    def until(self, spec: Any, label: str | None = None) -> None:
        self.request("until", spec, label or str(spec))

    def command(self, line: str) -> None:
        self.request("command", line)

    def focus(self, spec: str) -> None:
        self.request("focus", spec)

    def walk(self, addr: int | None) -> None:
        self.request("walk", addr)

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
        """The screen has answered: the simulation may have the CPU back."""
        self._hold_until = 0.0

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
        return (self.idle.is_set() and self._handled == self._submitted
                and self.mode not in (RUNNING, BOOTING) and not self.events and not self.replies)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until the sim thread has handled every request and is paused (tests)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.idle.wait(0.01) and self._handled == self._submitted \
                    and self.mode not in (RUNNING, BOOTING):
                return True
        return False

    # -- sim thread ------------------------------------------------------------
    def _reply(self, kind: str, text: str) -> None:
        if text:
            self.replies.append(Reply(kind, text))

    def _listen(self, ev: Any) -> None:
        self.stats.events_seen += 1
        self.events.append(ev)

    def _main(self) -> None:
        try:
            self._boot()
            while not self._quit:
                if self._job is None or self.mode != RUNNING:
                    self._publish(force=True)
                    self.idle.set()
                    req = self._requests.get()
                    self.idle.clear()
                    self._handle(req)
                else:
                    self._drain_requests()
                    hold = self._hold_until - time.monotonic()
                    if hold > 0:
                        try:                 # wait, but wake at once for a request
                            req = self._requests.get(timeout=min(hold, 0.02))
                        except queue.Empty:
                            continue
                        self._handle(req)
                        continue
                    if self._job is not None and self.mode == RUNNING and not self._quit:
                        self._work()
                        self._publish()
        except Exception as exc:   # the simulator itself failed: show it, never a traceback
            self._crashed(exc)
            while not self._quit:
                self.idle.set()
                req = self._requests.get()
                if req[0] == "quit":
                    break
                self._reply("err", "the simulator stopped with an internal error; restart the lab")
                self._handled += 1

    def _crashed(self, exc: BaseException) -> None:
        self.mode = CRASHED
        self._job = None
        self.error = f"{type(exc).__name__}: {exc}"
        self.last_traceback = traceback.format_exc()
        self._reply("err", f"simulator error: {self.error}")
        try:
            self._publish(force=True)
        except Exception:
            pass

    def _boot(self) -> None:
        if self.session is None:
            try:
                self.session = self._factory()   # type: ignore[misc]
            except UserError as e:
                self.mode = NO_MACHINE
                self.error = str(e)
                self._reply("err", str(e))
                while not self._quit:
                    self.idle.set()
                    req = self._requests.get()
                    if req[0] == "quit":
                        return
                    self._reply("err", "no machine is loaded: " + self.error)
                    self._handled += 1
                return
        trace = self.session.machine.trace
        for ev in trace.events[-self.events.maxlen:]:
            self.events.append(ev)
        self.stats.events_seen = len(trace.events[-self.events.maxlen:])
        trace.listeners.append(self._listen)
        self.mode = STOPPED if self.session.machine.stopped else PAUSED

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
        if self.mode in (NO_MACHINE, CRASHED):
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
            self._op_run(None)

    def _op_run(self, budget: int | None) -> None:
        self._start(_Job("run", budget, label="run" if budget is None else f"run {budget:,}"))

    def _op_step(self, n: int) -> None:
        if self._job is not None:
            self._finish("paused")
        self._mark_before()
        if n <= 64:          # short steps happen at once, whatever the speed
            if self._refuse_if_stopped():
                return
            done = self.session.step(n)
            self.stats.instructions += done
            hit = self.session.break_hit
            msg = f"stepped {done}: {where_line(self.session.cpu_view())}"
            if hit is not None:
                msg = f"breakpoint: {hit.summary()}\n" + msg
            self._reply("info", msg)
            self._after_job_checks()
            return
        self._start(_Job("step", n, label=f"step {n:,}"))

    def _op_until(self, spec: Any, label: str) -> None:
        self._start(_Job("until", UNTIL_LIMIT, spec=spec, label=f"until {label}"))

    def _op_command(self, line: str) -> None:
        self._mark_before()
        text = self._execute(self.session, line) if self._execute else ""
        self._reply("out", text)
        words = line.split()
        if words and words[0] == "walk":
            self.walk_addr = int(words[1], 0) if len(words) > 1 else None

    def _op_focus(self, spec: str) -> None:
        ref = self.session.set_focus(spec)
        self._reply("info", f"focus: {ref.label} vcpu {ref.vcpu}")

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
        if self._job is not None:
            self._finish("interrupted")
        if self._refuse_if_stopped():
            return
        self._mark_before()
        self._job = job
        self.job_label = job.label
        self.mode = RUNNING
        self._next_tick = time.monotonic()

    def _finish(self, why: str, extra: str = "") -> None:
        job = self._job
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
        icount0 = sum(p[0] for p in before)
        t0 = time.perf_counter()
        hit = None
        found = None
        if job.kind == "run":
            hit = s.run(n)
        elif job.kind == "step":
            s.step(n)
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
            job.left -= n
        if per_tick is None and dt > 0:
            # Aim for slices of FULL_SPEED_SLICE seconds so a pause is taken promptly.
            chunk = self._chunks[job.kind] * FULL_SPEED_SLICE / dt
            self._chunks[job.kind] = int(max(100, min(200_000, chunk)))
        self._dirty = True
        if found is not None:
            self._finish("reached", f"#{found.seq} {found.summary()}")
            return
        if hit is not None:
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
        if self._progress() == before:
            self._finish("stuck", "the CPU is halted and nothing will wake it")
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


def build_view(session: Any, gen: int, walk_addr: int | None,
               before: dict[str, Any] | None = None) -> StateView:
    """Read the session's views into a StateView (call only on the thread that owns it)."""
    refs = session.vcpus()
    focus = session.focus
    infos = []
    for r in refs:
        c = r.cpu
        state = f"stopped: {c.stopped}" if c.stopped else ("halted" if c.halted else "running")
        spec = f"{0 if r.dom is None else r.dom}.{r.vcpu}"
        infos.append(VcpuInfo(r.label, r.dom, r.vcpu, spec, state, c.cpl, c.root, r == focus))
    cpu = session.cpu_view()
    if before is not None and (before["dom"], before["vcpu"], before["label"]) != \
            (cpu["dom"], cpu["vcpu"], cpu["label"]):
        before = None                 # another vCPU: nothing to compare with
    try:
        source = tuple(session.source_view())
    except Exception as e:       # an unmapped rip must not take the pane down
        source = ((cpu["rip"], f"(no source: {e})", True),)
    walk = None
    lines: tuple[str, ...] = ()
    note = ""
    va = cpu["rip"] if walk_addr is None else walk_addr
    try:
        walk, text = session.walk(va)
        lines = tuple(text)
    except UserError as e:
        note = str(e)
    except Exception as e:
        note = f"cannot walk {va:#x}: {e}"
    try:
        tlb = tuple(focus.cpu.tlb.entries())
    except Exception:
        tlb = ()
    m = session.machine
    images: dict[Any, tuple[Any, ...]] = {}
    for dom in dict.fromkeys(r.dom for r in refs):
        by_dom = m.images_for(dom) if hasattr(m, "images_for") else getattr(m, "images", {})
        images[dom] = tuple(by_dom.values())
    return StateView(
        gen=gen, vcpus=tuple(infos), cpu=cpu, source=source, tlb=tlb, walk=walk, walk_lines=lines,
        walk_note=note, walk_requested=walk_addr, console=session.console(),
        breakpoints=tuple(str(b) for b in session.breakpoints),
        images=images, cpu_hz=getattr(m, "cpu_hz", None),
        stopped=m.stopped, before=before)


def split_command(line: str) -> list[str]:
    """The words of a command line, or a UserError."""
    try:
        return shlex.split(line)
    except ValueError as e:
        raise UserError(f"cannot parse the command: {e}") from None
