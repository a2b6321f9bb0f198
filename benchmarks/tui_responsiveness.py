"""How the lab's screen copes with a machine running at full speed.

Runs the app headless (``App.run_test``) on a long workload at full speed and
measures:

* key-press-to-screen latency: a key is posted as the terminal driver would
  post it, and the time until a frame showing its effect has been composed is
  recorded (a letter typed at the prompt; ctrl+n, which on a large terminal
  moves the focus to the next pane and on a small one shows the next tab);
* the simulator's speed inside the app (guest instructions per second, every
  vCPU's) against the same machine run with no screen at all, over the very
  same stretch of instructions (measured twice and averaged);
* start-up time to the first full screen of the default scenario.

The target is the default Xen scenario (Domain-0, a PV and an HVM guest, with
the guests' workload made long enough never to end during a measurement) or
the bare machine.

Usage::

    python benchmarks/tui_responsiveness.py [--target xen|native] [--seconds 5] [--size 200x50]
                                            [--mix typing|panes|typing+panes|all]

It prints the figures and exits 0; it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from textual import events  # noqa: E402

from lab.session.build import native_machine  # noqa: E402
from lab.session.session import Session  # noqa: E402
from lab.tui.app import make_app  # noqa: E402

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


def headless_rate(target: str, start: int, count: int) -> float:
    """Instructions per second of the machine with no screen, over the same stretch of work
    the app was measured on: from instruction ``start`` for ``count`` instructions (the
    workload's phases run at different speeds, so any other stretch would not compare)."""
    m = build_machine(target)
    m.run(start)
    t0 = time.perf_counter()
    m.run(count)
    return count / (time.perf_counter() - t0)


async def in_app(target: str, seconds: float, size: tuple[int, int], presses_per_second: float,
                 kinds: tuple[str, ...]) -> dict:
    session = Session(build_machine(target))
    app = make_app(session=session, theme="textual-dark")
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

        app._display = display                   # type: ignore[method-assign]
        app.runner.run(None)
        while app.runner.mode != "running":
            await asyncio.sleep(0.001)
        machine = session.machine
        insn0 = instructions(machine)
        ui_cpu0 = time.thread_time()
        t0 = time.perf_counter()
        latencies: dict[str, list[float]] = {"typing": [], "pane": []}
        gap = 1 / presses_per_second
        n = 0
        while kinds and time.perf_counter() - t0 < seconds:
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
            await asyncio.sleep(max(0.0, min(sent + gap, t0 + seconds) - time.perf_counter()))
        if not kinds:
            await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - t0
        ui_cpu = time.thread_time() - ui_cpu0
        insns = instructions(machine) - insn0
        ticks = app.ticks
        app.runner.pause()
        app.runner.wait_idle(5)
    return {"rate": insns / elapsed, "start": insn0, "count": insns, "latencies": latencies, "ticks": ticks,
            "ui_cpu": ui_cpu / elapsed, "frames": frames}


_STARTUP = """
import time
t0 = time.perf_counter()
import asyncio, sys
sys.path.insert(0, {root!r})
from lab.tui.app import make_app
async def main():
    app = make_app(theme="textual-dark")
    async with app.run_test(size=(80, 24)) as pilot:
        while app.view is None or app._gen == 0:
            await asyncio.sleep(0.002)
        await pilot.pause()
        print(time.perf_counter() - t0, "prompt_toolkit" in sys.modules)
asyncio.run(main())
"""


def startup_seconds(runs: int = 3) -> tuple[float, float, bool]:
    """(first full screen after the program starts, whole process wall time, prompt_toolkit loaded).

    The first figure runs from the program's first line to the first frame that
    shows the booted default scenario; the second adds interpreter start-up and
    exit. Best of ``runs``.
    """
    import subprocess
    root = str(Path(__file__).resolve().parent.parent)
    inside_best = wall_best = float("inf")
    ptk = False
    for _ in range(runs):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _STARTUP.format(root=root)], capture_output=True,
                             text=True, check=True).stdout.split()
        wall_best = min(wall_best, time.perf_counter() - start)
        inside_best = min(inside_best, float(out[0]))
        ptk = ptk or out[1] == "True"
    return inside_best, wall_best, ptk


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
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds of each measurement")
    ap.add_argument("--size", default="200x50", help="terminal size, e.g. 80x24 or 200x50")
    ap.add_argument("--presses", type=float, default=4.0, help="key presses per second")
    ap.add_argument("--mix", choices=sorted(MIXES) + ["all"], default="all",
                    help="which keys to press while the machine runs")
    ap.add_argument("--no-startup", action="store_true", help="skip the start-up measurement")
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.lower().split("x"))

    print(f"target {args.target}; terminal {w}x{h}; {args.presses:g} key presses a second; "
          f"{args.seconds:g} s per measurement")
    if not args.no_startup:
        start_s, start_wall, ptk = startup_seconds()
        print(f"start-up to first full screen: {start_s * 1000:.0f} ms "
              f"(whole process including interpreter start and exit: {start_wall * 1000:.0f} ms; "
              f"prompt_toolkit loaded: {ptk})")
    mixes = list(MIXES) if args.mix == "all" else [args.mix]
    for mix in mixes:
        r = asyncio.run(in_app(args.target, args.seconds, (w, h), args.presses, MIXES[mix]))
        # The same stretch of work with no screen, twice (other load on the computer varies).
        runs = [headless_rate(args.target, r["start"], r["count"]) for _ in range(2)]
        head = sum(runs) / len(runs)
        print(f"\nkeys: {mix}")
        print(f"  headless simulator: {head:,.0f} instructions/s ({' and '.join(f'{x:,.0f}' for x in runs)}, "
              f"over the same {r['count']:,} instructions)")
        print(f"  simulator inside the app: {r['rate']:,.0f} instructions/s ({r['rate'] / head:.0%} of headless)")
        for kind, label in (("typing", "a letter at the prompt"), ("pane", "ctrl+n (next pane)")):
            ms = sorted(x * 1000 for x in r["latencies"][kind])
            if ms:
                p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
                print(f"  key to screen, {label + ':':<24} median {statistics.median(ms):5.1f} ms, "
                      f"p90 {p90:5.1f} ms, max {max(ms):5.1f} ms ({len(ms)} presses)")
        print(f"  frames composed {r['frames']}, screen ticks {r['ticks']}, "
              f"screen thread CPU {r['ui_cpu']:.0%} of the time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
