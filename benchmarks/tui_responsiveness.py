"""How the lab's screen copes with a machine running at full speed.

Runs the app headless (``App.run_test``) on a long workload at full speed and
measures:

* key-press-to-screen latency: a key is posted as the terminal driver would
  post it, and the time until a frame showing its effect has been composed is
  recorded (a letter typed at the prompt; ctrl+n, which on a large terminal
  moves the focus to the next pane and on a small one shows the next tab);
* the simulator's speed inside the app (guest instructions per second, every
  vCPU's) against the same machine run with no screen at all, from the same
  point of the workload; the two take turns of a second each, so that a
  change in the computer's speed (it may be shared) touches both alike;
* the screen thread's CPU time per ctrl+n with the machine paused (steadier
  than the figures above on a shared computer: nothing else competes within
  the process; the test driver's own pauses are counted too, alike for every
  version measured);
* start-up time to the first full screen of the default scenario, headless and
  in a real terminal (tmux, median of 5), as ``benchmarks/startup.py`` measures
  it (that script also measures a cold cache and can profile the start).

The target is the default Xen scenario (Domain-0, a PV and an HVM guest, with
the guests' workload made long enough never to end during a measurement) or
the bare machine.

Usage::

    python benchmarks/tui_responsiveness.py [--sim process|thread] [--target xen|native] [--seconds 5] [--size 200x50]
                                            [--mix typing|panes|typing+panes|all] [--startup-only]
                                            [--paused-switches N]

It prints the figures and exits 0; it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from textual import events  # noqa: E402

from lab.session.build import native_machine  # noqa: E402
from lab.session.session import Session  # noqa: E402
from lab.tui.app import make_app  # noqa: E402
from lab.tui.launch import make_runner  # noqa: E402

ROUNDS = 600            # workload rounds: long enough never to finish during a measurement
WARM_UP = 200_000       # instructions run before measuring (past boot)


def build_machine(target: str):
    """A machine whose workload outlasts any measurement."""
    if target == "native":
        return native_machine(arg=ROUNDS)
    from lab.session.scenario import DEFAULT_SCENARIO, boot_host, load_scenario
    sc = load_scenario(DEFAULT_SCENARIO)
    host, xl = boot_host(sc.host, sc.dom0_memory, sc.dom0_vcpus)
    for cfg in sc.domains:
        conf = xl.load(cfg, sc.path.parent)
        conf.cmdline = f"{conf.cmdline or ''} rounds={ROUNDS}".strip()
        xl.create(conf)
    return host


def instructions(machine) -> int:
    return sum(r[3].icount for r in machine.vcpu_refs()) if hasattr(machine, "vcpu_refs") \
        else machine.cpu.icount


class Reference:
    """The same machine with no screen, run in turns with the app.

    The computer this runs on may be shared: its speed can change by a third
    from one second to the next. So the app and the reference take turns of
    WINDOW seconds each, and each side's speed is the sum over its turns: both
    see the same changes in the computer's speed.
    """

    def __init__(self, target: str, start: int) -> None:
        self.machine = build_machine(target)
        self.machine.run(start)              # the same point of the workload as the app
        self.instructions = 0
        self.seconds = 0.0

    def turn(self, seconds: float) -> None:
        m = self.machine
        i0 = instructions(m)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds and not m.stopped:
            m.run(20_000)
        self.seconds += time.perf_counter() - t0
        self.instructions += instructions(m) - i0

    @property
    def rate(self) -> float:
        return self.instructions / self.seconds if self.seconds else 0.0


WINDOW = 1.0            # seconds of each turn of the app and of the reference
SETTLE = 0.3            # seconds the app runs at the start of its turn before measuring


def sim_progress(runner, machine) -> tuple[int, float]:
    """(instructions run so far, when): the thread runner's machine is at hand; a process
    runner's child says, with each batch, how far it is and when it said so."""
    if runner.separate_process:
        return runner.stats.instructions, runner.stats_at
    return instructions(machine), time.monotonic()


def position(runner, machine) -> int:
    """Where the paused machine is in its workload (every vCPU's instructions)."""
    if not runner.separate_process:
        return instructions(machine)
    view = runner.view
    return view.host_insns if view.host_insns is not None else view.cpu["icount"]


async def in_app(target: str, seconds: float, size: tuple[int, int], presses_per_second: float,
                 kinds: tuple[str, ...], process: bool = True) -> dict:
    # The app freezes what exists after its first view, as ``xenlab`` does: the app of an
    # earlier measurement must be gone by then, not kept for good.
    gc.collect()
    session = Session(build_machine(target))
    runner = make_runner(session=session, process=process)
    app = make_app(session=session, theme="textual-dark", runner=runner, freeze_after_start=True)
    frames = 0
    # The key being measured: what the screen showed before it, and when a frame showing
    # something else was composed. The display hook wakes the waiting loop, so the
    # measurement itself does not poll (polling would take the interpreter from the
    # simulation thread and lower the figure it measures).
    waiting: dict = {"before": None, "seen": None}
    arrived = asyncio.Event()
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        app.runner.run(WARM_UP)
        app.runner.wait_idle(30)
        await pilot.pause(0.2)

        real_display = app._display
        cmd = app.main.cmd()

        def shown() -> tuple:
            return app.main.active_pane, cmd.value, id(app.focused)

        def display(screen, renderable):          # note when a frame shows the key's effect
            nonlocal frames
            if renderable is not None and not app._batch_count:
                frames += 1
                if waiting["before"] is not None and waiting["seen"] is None and shown() != waiting["before"]:
                    waiting["seen"] = time.perf_counter()
                    arrived.set()
            return real_display(screen, renderable)

        # Each pane is drawn focused once before measuring: the first visit of a pane lays the
        # screen out again (its scrollbars take their styles), once in a session.
        for _ in range(7):
            await pilot.press("ctrl+n")
        cmd.value = ""
        cmd.focus()
        await pilot.pause(0.2)
        app._display = display                   # type: ignore[method-assign]
        machine = session.machine
        reference = Reference(target, position(app.runner, machine))
        latencies: dict[str, list[float]] = {"typing": [], "pane": []}
        gap = 1 / presses_per_second
        n = 0
        insns = 0
        sim_time = 0.0          # the time over which ``insns`` ran (a process runner's batches say when)
        elapsed = 0.0
        ui_cpu = 0.0
        while elapsed < seconds:
            # The app's turn: the machine runs at full speed while keys are pressed.
            app.runner.run(None)
            while app.runner.mode != "running":
                await asyncio.sleep(0.001)
            # Starting (and at the end of the turn, pausing) redraws the key bar (F5 reads
            # Pause, then Run): once per press of F5 for a learner, not part of the steady state.
            await asyncio.sleep(SETTLE)
            insn0, at0 = sim_progress(app.runner, machine)
            ui_cpu0 = time.thread_time()
            t0 = time.perf_counter()
            while kinds and time.perf_counter() - t0 < WINDOW:
                n += 1
                kind = kinds[n % len(kinds)]
                key = events.Key("x", "x") if kind == "typing" else events.Key("ctrl+n", None)
                if kind == "typing" and (len(cmd.value) > 40 or not cmd.has_focus):
                    cmd.value = ""
                    cmd.focus()                 # on a large screen ctrl+n moved the focus away
                    await asyncio.sleep(0.1)
                arrived.clear()
                waiting["seen"] = None
                waiting["before"] = shown()
                sent = time.perf_counter()
                app.post_message(key)
                try:
                    await asyncio.wait_for(arrived.wait(), 2.0)
                except asyncio.TimeoutError:
                    pass
                waiting["before"] = None
                seen = waiting["seen"]
                latencies[kind].append((seen if seen is not None else sent + 2.0) - sent)
                await asyncio.sleep(max(0.0, min(sent + gap, t0 + WINDOW) - time.perf_counter()))
            if not kinds:
                await asyncio.sleep(WINDOW)
            elapsed += time.perf_counter() - t0
            ui_cpu += time.thread_time() - ui_cpu0
            insn1, at1 = sim_progress(app.runner, machine)
            insns += insn1 - insn0
            sim_time += at1 - at0
            app.runner.pause()
            app.runner.wait_idle(5)
            # The reference's turn (the screen waits meanwhile).
            reference.turn(WINDOW)
        ticks = app.ticks
    return {"rate": insns / sim_time, "headless": reference.rate, "latencies": latencies, "ticks": ticks,
            "ui_cpu": ui_cpu / elapsed, "frames": frames}


async def paused_switches(target: str, size: tuple[int, int], count: int, process: bool = True) -> list[float]:
    """The screen thread's CPU seconds for each of ``count`` ctrl+n, the machine paused."""
    session = Session(build_machine(target))
    app = make_app(session=session, theme="textual-dark", runner=make_runner(session=session, process=process))
    costs = []
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        app.runner.run(WARM_UP)
        app.runner.wait_idle(30)
        await pilot.pause(0.3)
        for _ in range(7):                       # every pane drawn once (see in_app)
            await pilot.press("ctrl+n")
        await pilot.pause(0.3)
        for _ in range(count):
            t0 = time.thread_time()
            await pilot.press("ctrl+n")
            await pilot.pause()
            await pilot.pause()
            costs.append(time.thread_time() - t0)
    return costs


MIXES = {
    "none": (),                            # no key at all: what the screen costs by itself
    "typing": ("typing",),                 # what a learner mostly does while the machine runs
    "panes": ("pane",),                    # moving between panes: every key is ctrl+n
    "typing+panes": ("typing", "pane"),    # both, alternately
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=("xen", "native"), default="xen",
                    help="the default Xen scenario (default) or the bare machine")
    ap.add_argument("--seconds", type=float, default=5.0,
                    help="seconds the app runs in each measurement (as many again for the reference)")
    ap.add_argument("--size", default="200x50", help="terminal size, e.g. 80x24 or 200x50")
    ap.add_argument("--presses", type=float, default=4.0, help="key presses per second")
    ap.add_argument("--mix", choices=sorted(MIXES) + ["all"], default="all",
                    help="which keys to press while the machine runs")
    ap.add_argument("--sim", choices=("process", "thread"), default="process",
                    help="the simulation in a process of its own (default, as xenlab runs it) or on a "
                         "thread of the screen's process (XENLAB_SIM_THREAD=1)")
    ap.add_argument("--repeat", type=int, default=3, help="measurements of each mix (the median is shown)")
    ap.add_argument("--no-startup", action="store_true", help="skip the start-up measurement")
    ap.add_argument("--startup-only", action="store_true", help="measure start-up only")
    ap.add_argument("--paused-switches", type=int, default=0, metavar="N",
                    help="only measure the screen's CPU for N ctrl+n with the machine paused")
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.lower().split("x"))

    process = args.sim == "process"
    print(f"simulation: {args.sim}; target {args.target}; terminal {w}x{h}; {args.presses:g} key presses a second; "
          f"{args.seconds:g} s per measurement; load average {os.getloadavg()[0]:.2f}")
    if args.paused_switches:
        ms = sorted(x * 1000 for x in asyncio.run(paused_switches(args.target, (w, h), args.paused_switches,
                                                                   process)))
        print(f"screen thread CPU per ctrl+n, machine paused: median {statistics.median(ms):.1f} ms, "
              f"quartiles {ms[len(ms) // 4]:.1f}-{ms[3 * len(ms) // 4]:.1f} ms ({len(ms)} presses)")
        return 0
    if not args.no_startup:
        import startup           # benchmarks/startup.py: the start-up figures, measured as there
        runs = startup.headless(3)
        print(f"start-up to the first frame of the booted machine (headless): median "
              f"{statistics.median(r[0] for r in runs) * 1000:.0f} ms, "
              f"{statistics.median(r[1] for r in runs) * 1000:.0f} ms of CPU "
              f"(prompt_toolkit loaded: {any(r[2] for r in runs)})")
        if shutil.which("tmux") is None:
            print("start-up in a terminal: no tmux here, not measured")
        else:
            got = startup.in_terminal(5, (w, h), cold=False)
            print(f"start-up in a terminal (tmux {w}x{h}) to the first full frame: "
                  + (startup.describe(got) if got else "no full frame seen"))
    if args.startup_only:
        return 0
    mixes = list(MIXES) if args.mix == "all" else [args.mix]
    for mix in mixes:
        shares, rates, heads, results = [], [], [], []
        for _ in range(args.repeat):
            r = asyncio.run(in_app(args.target, args.seconds, (w, h), args.presses, MIXES[mix], process))
            shares.append(r["rate"] / r["headless"])
            rates.append(r["rate"])
            heads.append(r["headless"])
            results.append(r)
        print(f"\nkeys: {mix}")
        print(f"  headless simulator: {statistics.median(heads):,.0f} instructions/s (median of {args.repeat}; "
              f"in turns of {WINDOW:g} s with the app)")
        print(f"  simulator inside the app: {statistics.median(rates):,.0f} instructions/s; "
              f"{statistics.median(shares):.0%} of headless (median; runs: "
              f"{', '.join(f'{x:.0%}' for x in shares)})")
        latencies = {k: [x for r in results for x in r["latencies"][k]] for k in ("typing", "pane")}
        for kind, label in (("typing", "a letter at the prompt"), ("pane", "ctrl+n (next pane)")):
            ms = sorted(x * 1000 for x in latencies[kind])
            if ms:
                p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
                print(f"  key to screen, {label + ':':<24} median {statistics.median(ms):5.1f} ms, "
                      f"p90 {p90:5.1f} ms, max {max(ms):5.1f} ms ({len(ms)} presses)")
        print(f"  frames composed {sum(r['frames'] for r in results)}, screen ticks "
              f"{sum(r['ticks'] for r in results)}, screen thread CPU "
              f"{statistics.median(r['ui_cpu'] for r in results):.0%} of the time (median)")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
