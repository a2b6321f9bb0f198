"""The simulation in a process of its own, behind the screen.

Python runs one thread of a process at a time. With the simulation on a thread
of the screen's process, every millisecond spent drawing is taken from the
machine, and a key waits for the simulation's turn. Here the machine runs in a
child process (forked, so it starts at once and shares what was loaded before
the fork) and the screen and the machine each have a core:

* the child runs the ordinary :class:`~lab.tui.runner.Runner` on its main
  thread; a small thread there reads the screen's requests from a pipe into the
  runner's request queue;
* the child sends the screen what it shows, in batches, on the simulation's own
  turn (after a slice, at most ten times a second at full speed, thirty
  otherwise, and whenever it goes idle): the new :class:`StateView` when it
  changed, the events the logs can show, replies, and its status;
* :class:`ProcessRunner`, in the screen's process, sends the requests and
  receives the batches on a reader thread into the same structures the screen
  reads from a thread runner (``events``, ``replies``, ``view``, ``mode`` ...).

The wire is pickle over two pipes, framed by a length: both ends are the same
program. Two things would make batches large, and are kept small: a machine
running flat out makes tens of thousands of events a second, of which the logs
keep the last 2,000 rows each, so a batch carries at most that many of each
log's kinds (the status bar's count of events seen includes the rest, "only in
the trace"), as plain tuples; and the loaded images (sources and line maps of
the guests' kernels, about a megabyte), which a view refers to, are sent once
and named by a number afterwards.

The child quits when asked, when the screen's end of the pipe closes, or when
its parent is gone (checked twice a second): its recording is closed with its
end line either way. A child that dies (killed, a bug) becomes the runner's
"simulator error" mode with one line, never a hung screen.

Nothing here imports Textual: a process runner can be driven and tested headless.
"""

from __future__ import annotations

import atexit
import dataclasses
import gc
import os
import pickle
import select
import signal
import struct
import threading
import time
import traceback
from collections import deque
from typing import Any, Callable

from ..session.commands import REGISTRY, Call
from ..trace import Event
from .runner import (BOOTING, CRASHED, DEFAULT_SPEED, EVENT_BUFFER, FULL_SPEED_TICK, INPUT_HOLD, RUNNING, SPEEDS,
                     TICK, Controls, Reply, Runner, Stats)
from .state import CALL_KINDS, IO_KINDS, LOG_ROWS

#: Seconds between two looks of the child at its parent (it quits when the parent is gone).
PARENT_CHECK = 0.5
#: Seconds ``close`` waits for the child to quit (its recording closed) before it kills it.
CLOSE_WAIT = 3.0
#: Below this share of a core while running flat out, the child shares its core with other
#: work (the computer is busy): then it gives way to the screen for a key, as a thread does.
CONTENDED = 0.8
#: Seconds of running over which the child measures its share of a core.
SHARE_WINDOW = 0.5

_HEADER = struct.Struct("!Q")
_LOG_OF = {kind: 0 for kind in CALL_KINDS} | {kind: 1 for kind in IO_KINDS}


class _Pipe:
    """Messages (pickled objects) each way over two pipes, framed by their length."""

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd = rfd
        self.wfd = wfd

    def send(self, obj: Any) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(_HEADER.pack(len(data)) + data)
        while view:
            view = view[os.write(self.wfd, view):]

    def _read(self, n: int) -> bytes:
        parts = []
        while n:
            chunk = os.read(self.rfd, min(n, 1 << 20))
            if not chunk:
                raise EOFError("the other end closed the pipe")
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def recv(self) -> Any:
        (size,) = _HEADER.unpack(self._read(_HEADER.size))
        return pickle.loads(self._read(size))

    def readable(self, timeout: float) -> bool:
        return bool(select.select([self.rfd], [], [], timeout)[0])

    def close(self) -> None:
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass


def _event_tuple(ev: Any) -> tuple:
    return (ev.seq, ev.cycle, ev.pcpu, ev.dom, ev.vcpu, ev.kind, ev.data)


def shown_events(events: list, limit: int = LOG_ROWS) -> list:
    """The events a screen can show, in order: the last ``limit`` of each log's kinds
    (older ones would scroll out of the log unseen; the rest no log shows)."""
    kept = [0, 0]
    out = []
    for ev in reversed(events):
        log = _LOG_OF.get(ev.kind)
        if log is not None and kept[log] < limit:
            kept[log] += 1
            out.append(ev)
    out.reverse()
    return out


# -- the child ----------------------------------------------------------------------------
class _ChildRunner(Runner):
    """The ordinary runner, on the child's main thread, sending what the screen needs."""

    def __init__(self, pipe: _Pipe, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pipe = pipe
        self._last_ship = 0.0
        self._shipped_gen = 0
        self._shipped_stop: Any = None
        self._shipped_lesson: Any = None
        self._shipped_traceback: str | None = None
        self._image_keys: dict[int, tuple[int, Any]] = {}    # id(image): (its number, the image)
        self._next_image = 0
        self.lost = False                                    # the screen's end is gone
        #: Whether the child shares its core with other work (see ``CONTENDED``).
        self.contended = False
        self._share_from: tuple[float, float] | None = None  # (time in slices, CPU) when measuring began

    def key_pressed(self, seconds: float) -> None:
        """The screen has a key to answer: on a busy computer, where the screen and the
        simulation would share a core, the simulation gives way until it has answered
        (``resume``); with a core each it runs on."""
        if self.contended:
            self.give_way(seconds)

    def _measure_share(self) -> None:
        """The share of a core the child gets while it runs flat out: its CPU time against
        the time it spent running slices (a slice would take all of a core; the time it gave
        way or waited is not counted)."""
        if self.mode != RUNNING or SPEEDS[self.speed] is not None:
            self._share_from = None
            return
        now = (self.stats.sim_seconds, time.process_time())
        if self._share_from is None:
            self._share_from = now
            return
        ran = now[0] - self._share_from[0]
        if ran >= SHARE_WINDOW:
            self.contended = (now[1] - self._share_from[1]) / ran < CONTENDED
            self._share_from = now

    def _settle(self) -> None:
        super()._settle()
        self.ship(idle=True)

    def _publish(self, force: bool = False) -> None:
        super()._publish(force)
        interval = FULL_SPEED_TICK if SPEEDS[self.speed] is None else TICK
        if time.monotonic() - self._last_ship >= interval:
            self.ship(idle=False)

    def ship(self, idle: bool, final: bool = False) -> None:
        """Send one batch: what changed since the last, and the status (last, as the screen
        reads it: a status saying idle comes with everything that led there)."""
        if self.lost:
            return
        self._measure_share()
        self._last_ship = time.monotonic()
        batch: dict[str, Any] = {}
        events = self.drain_events(len(self.events))
        if events:
            batch["events"] = [_event_tuple(ev) for ev in shown_events(events)]
        replies = self.drain_replies()
        if replies:
            batch["replies"] = [(r.kind, r.text) for r in replies]
        view = self.view
        if view is not None and view.gen != self._shipped_gen:
            self._shipped_gen = view.gen
            batch["view"], batch["images"] = self._view_for_wire(view)
        if self.stop_event is not self._shipped_stop:
            self._shipped_stop = self.stop_event
            batch["stop"] = _event_tuple(self.stop_event) if self.stop_event is not None else None
        if self.tutor is not None:
            lesson = self.tutor.state()
            if lesson != self._shipped_lesson:
                self._shipped_lesson = batch["lesson"] = lesson
        if self.last_traceback != self._shipped_traceback:
            self._shipped_traceback = batch["traceback"] = self.last_traceback
        st = self.stats
        batch["status"] = {
            "mode": self.mode, "job": self.job_label, "error": self.error, "history": self.history,
            "xen": self.xen, "handled": self._handled, "idle": idle, "booted": self.booted.is_set(),
            "contended": self.contended,
            "recording": self.recording, "travel": self.time_travel, "final": final,
            "stats": (st.events_seen, st.snapshots, st.chunks, st.sim_seconds, st.instructions),
            "at": self._last_ship}
        try:
            self._pipe.send(batch)
        except OSError:               # the screen is gone: stop (the recording is closed on the way out)
            self.lost = True
            self._quit = True

    def _view_for_wire(self, view: Any) -> tuple[Any, dict[int, Any]]:
        """The view with its images named by number, and the images the screen has not had."""
        new: dict[int, Any] = {}
        keys: dict[int, tuple[int, Any]] = {}
        named = {}
        for dom, images in view.images.items():
            numbers = []
            for image in images:
                key = self._image_keys.get(id(image))
                if key is None:
                    key = (self._next_image, image)
                    self._next_image += 1
                    new[key[0]] = image
                keys[id(image)] = key
                numbers.append(key[0])
            named[dom] = tuple(numbers)
        self._image_keys = keys       # only the images of the latest view are kept (both ends)
        return dataclasses.replace(view, images=named), new


def _child_requests(runner: _ChildRunner, pipe: _Pipe, parent: int) -> None:
    """The child's reader thread: the screen's requests into the runner's queue, until
    the pipe closes or the parent is gone (then: quit)."""
    try:
        while True:
            if not pipe.readable(PARENT_CHECK):
                if os.getppid() != parent:
                    break
                continue
            req = pipe.recv()
            if req[0] == "speed":               # not a request: the screen's setting
                runner.speed = req[1]
                continue
            if req[0] == "key":                 # nor this: the screen has a key to answer
                runner.key_pressed(req[1])
                continue
            if req[0] == "resume":              # the screen has answered the key: run on at once
                runner._hold_until = 0.0
            if req[0] == "call":                # a parsed command line, by its command's name
                req = ("call", Call(REGISTRY[req[1]], req[2], req[3]))
            runner._requests.put(req)
            if req[0] == "quit":
                return
    except (EOFError, OSError, pickle.UnpicklingError):
        pass
    runner._quit = True
    runner._requests.put(("quit",))


def _child_main(pipe: _Pipe, parent: int, args: tuple, kwargs: dict) -> int:
    # Keys reach the screen, never this process: ctrl+c is the screen's, and the screen
    # tells this process when to stop. A hang-up or a polite kill stops it as quit does,
    # so its recording gets its end line.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        signal.set_wakeup_fd(-1)      # a signal here must not wake the screen's event loop
    except ValueError:                # forked from another thread than the main one: none was set
        pass
    # The terminal is the screen's: nothing of this process may be written on it.
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    # What the fork copied stays as it is: the collector need not look at it again.
    gc.freeze()
    runner = _ChildRunner(pipe, *args, **kwargs)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: runner._requests.put(("quit",)))
    reader = threading.Thread(target=_child_requests, args=(runner, pipe, parent), name="xenlab-requests",
                              daemon=True)
    reader.start()
    try:
        runner._main()
    finally:
        if runner.session is not None:
            from ..session.recorder import stop_recording
            try:
                stop_recording(runner.session)          # the end line: the recording is complete
            except Exception:
                pass
        runner.ship(idle=True, final=True)
    return 0


# -- the screen's side -----------------------------------------------------------------------
_LIVE: set["ProcessRunner"] = set()


class ProcessRunner(Controls):
    """A runner whose simulation lives in a child process (see the module's text).

    The screen's interface is a thread runner's: requests in, and ``events``, ``replies``,
    ``view``, ``mode``, ``stats`` ... collected. The session lives in the child: ``session``,
    ``tutor``, ``recorder`` and ``time_machine`` are None here, and what the screen needs of
    them comes with the status (``recording``, ``time_travel``, ``lesson_state()``).
    """

    separate_process = True
    session = None
    tutor = None
    recorder = None
    time_machine = None

    def __init__(self, session: Any = None, *, factory: Callable[[], Any] | None = None,
                 opener: Callable[[str], Any] | None = None,
                 buffer: int = EVENT_BUFFER, speed: int = DEFAULT_SPEED) -> None:
        if session is None and factory is None:
            raise ValueError("a ProcessRunner needs a session or a factory")
        # What the child builds its runner from (the fork copies the session as it is now).
        self._args: tuple[Any, ...] = (session,)
        self._kwargs: dict[str, Any] = {"factory": factory, "opener": opener, "buffer": buffer, "speed": speed}
        self.events: deque = deque(maxlen=buffer)
        self.replies: deque[Reply] = deque(maxlen=2000)
        self.view: Any = None
        self.mode = BOOTING
        self.job_label = ""
        self.speed = speed
        self.stats = Stats()
        #: When the child sent the latest stats (``time.monotonic``, the same clock in both).
        self.stats_at = 0.0
        self.history = 0
        self.error: str | None = None
        self.last_traceback: str | None = None
        self.xen = False
        self.stop_event: Any = None
        self.booted = threading.Event()
        self.boot_deadline: float | None = None
        self.pid: int | None = None
        #: How the child ended (``os.waitpid``'s status), once it has.
        self.exit_status: int | None = None
        self._pipe: _Pipe | None = None
        self._reader: threading.Thread | None = None
        self._send_lock = threading.Lock()       # the pipe's sending end (the screen, close)
        self._reap_lock = threading.Lock()       # waiting for the child (the reader thread, close)
        self._changed = threading.Condition()
        self._submitted = 0
        self._handled = 0
        self._idle = False
        self._recording = False
        self._travel = False
        self._lesson: Any = None
        self._images: dict[int, Any] = {}
        self._closing = False
        self._ended = False
        self._contended = False
        self._holding = False

    # -- the child's life ---------------------------------------------------------------
    def start(self) -> None:
        """Fork the child (once); the machine boots there while this process goes on."""
        if self.pid is not None or self._ended:
            return
        down_r, down_w = os.pipe()          # requests, to the child
        up_r, up_w = os.pipe()              # batches, from the child
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:                        # the child: it never returns from here
            code = 1
            try:
                os.close(down_w)
                os.close(up_r)
                for other in _LIVE:         # another runner's pipes: its child must see them close
                    if other._pipe is not None:
                        other._pipe.close()
                code = _child_main(_Pipe(down_r, up_w), parent, self._args, self._kwargs)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(down_r)
        os.close(up_w)
        self.pid = pid
        self._args = ()                     # the child has its copy; this process lets go of it
        self._pipe = _Pipe(up_r, down_w)
        _LIVE.add(self)
        self._reader = threading.Thread(target=self._receive, name="xenlab-sim-reader", daemon=True)
        self._reader.start()

    def close(self, timeout: float = CLOSE_WAIT) -> None:
        """Stop the child: it closes its recording and exits; killed if it has not within
        ``timeout`` seconds. Waited for, so it leaves no zombie."""
        if self.pid is None:
            return
        self._closing = True
        self._send(("quit",))
        end = time.monotonic() + timeout
        while not self._reap() and time.monotonic() < end:
            time.sleep(0.005)
        if self.exit_status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap(block=True)
        if self._reader is not None:
            self._reader.join(1.0)
        if self._pipe is not None:
            self._pipe.close()
        _LIVE.discard(self)

    def _reap(self, block: bool = False) -> bool:
        """Collect the child's exit status if it has ended (True then)."""
        with self._reap_lock:
            if self.exit_status is not None:
                return True
            try:
                pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)   # type: ignore[arg-type]
            except ChildProcessError:
                pid, status = self.pid, 0
            if not pid:
                return False
            self.exit_status = status
            return True

    @property
    def alive(self) -> bool:
        """Its process started and has not ended (once ended, nothing brings it back)."""
        return self.pid is not None and not self._ended

    # -- requests -------------------------------------------------------------------------
    def _send(self, msg: tuple) -> bool:
        if self._pipe is None or self._ended:
            return False
        try:
            with self._send_lock:
                self._pipe.send(msg)
            return True
        except OSError:
            return False

    def request(self, *req: Any) -> None:
        if req[0] == "call":                    # by its command's name: the child has the registry
            call = req[1]
            req = ("call", call.command.name, call.args, call.line)
        with self._changed:
            self._submitted += 1
        if not self._send(req):
            with self._changed:
                self._handled += 1
            self.replies.append(Reply("err", "the simulator's process has ended: 'quit' the screen and "
                                             "start the lab again"))

    def set_speed(self, index: int) -> None:
        self.speed = max(0, min(len(SPEEDS) - 1, index))
        self._send(("speed", self.speed))

    def give_way(self, seconds: float = INPUT_HOLD) -> None:
        """The screen has a key to answer. The simulation has a process of its own, and on
        a computer with a core free for each it runs on; on a busy one, where they would
        share a core, it gives way until the screen has answered (``resume``)."""
        if self.contended:
            self._holding = True
            self._send(("key", seconds))

    def resume(self) -> None:
        """The screen has answered: the simulation runs on at once, if it gave way."""
        if self._holding:
            self._holding = False
            self.request("resume")

    @property
    def contended(self) -> bool:
        """Whether the simulation shares its core with other work (it said so in its status)."""
        return self._contended

    # -- what the child publishes ---------------------------------------------------------
    @property
    def recording(self) -> bool:
        return self._recording

    @property
    def time_travel(self) -> bool:
        return self._travel

    def lesson_state(self) -> Any:
        return self._lesson

    def _quiet(self) -> bool:
        with self._changed:
            return self._handled == self._submitted and self.mode not in (RUNNING, BOOTING) and self._idle

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until the child has handled every request and is paused (tests, benchmarks)."""
        end = time.monotonic() + timeout
        with self._changed:
            while not (self._handled == self._submitted and self.mode not in (RUNNING, BOOTING) and self._idle):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def _receive(self) -> None:
        """The reader thread: each batch into the structures the screen reads."""
        pipe = self._pipe
        assert pipe is not None
        why = ""
        try:
            while True:
                batch = pipe.recv()
                self._apply(batch)
                if batch["status"]["final"]:
                    break
        except EOFError:
            pass
        except Exception as exc:                # a batch that cannot be read: the child is no use
            why = f"{type(exc).__name__}: {exc}"
        self._lost(why)

    def _apply(self, batch: dict[str, Any]) -> None:
        status = batch["status"]
        if status["history"] != self.history:
            self.events.clear()                 # a trip in time: the logs start again
        if "events" in batch:
            self.events.extend(Event(*t) for t in batch["events"])
        for kind, text in batch.get("replies", ()):
            self.replies.append(Reply(kind, text))
        if "view" in batch:
            self._images.update(batch["images"])
            view = batch["view"]
            images = {dom: tuple(self._images[k] for k in keys) for dom, keys in view.images.items()}
            self._images = {k: self._images[k] for keys in view.images.values() for k in keys}
            self.view = dataclasses.replace(view, images=images)
        if "stop" in batch:
            self.stop_event = Event(*batch["stop"]) if batch["stop"] is not None else None
        if "lesson" in batch:
            self._lesson = batch["lesson"]
        if "traceback" in batch:
            self.last_traceback = batch["traceback"]
        (self.stats.events_seen, self.stats.snapshots, self.stats.chunks, self.stats.sim_seconds,
         self.stats.instructions) = status["stats"]
        self.stats_at = status["at"]
        self.history = status["history"]
        self.xen = status["xen"]
        self._recording = status["recording"]
        self._travel = status["travel"]
        self._contended = status["contended"]
        self.job_label = status["job"]
        self.error = status["error"]
        with self._changed:
            self.mode = status["mode"]          # last: the screen reads the mode first
            self._handled = status["handled"]
            self._idle = status["idle"]
            self._changed.notify_all()
        if status["booted"]:
            self.booted.set()

    def _lost(self, why: str) -> None:
        """The child's end closed: on quit, as asked; else the child died (a simulator error)."""
        end = time.monotonic() + 1.0
        while not self._reap() and time.monotonic() < end and not self._closing:
            time.sleep(0.01)
        self._ended = True
        if not self._closing:
            self.error = why or f"its process ended ({_exit_reason(self.exit_status)})"
            self.replies.append(Reply("err", f"simulator error: {self.error}; 'quit' the screen "
                                             "and start the lab again"))
        with self._changed:
            if not self._closing:
                self.job_label = ""
                self.mode = CRASHED
            self._handled = self._submitted
            self._idle = True
            self._changed.notify_all()
        self.booted.set()


def _exit_reason(status: int | None) -> str:
    if status is None:
        return "it cannot be reached"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by {name}"
    return f"exit status {os.WEXITSTATUS(status)}"


@atexit.register
def _close_all() -> None:
    """A screen that ends without closing its runner still stops its child."""
    for runner in list(_LIVE):
        try:
            runner.close(1.0)
        except Exception:
            traceback.print_exc()
