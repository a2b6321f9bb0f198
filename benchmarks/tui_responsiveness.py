"""How the lab's screen copes with a machine running at full speed.

Runs the app headless (``App.run_test``) on a long native workload at full
speed and measures:

* key-press-to-screen latency: a key (ctrl+n, next pane) is posted as the
  terminal driver would post it, and the time until a frame showing its effect
  has been composed is recorded;
* simulator speed inside the app (guest instructions per second) against the
  same machine run headless, with no screen at all.

Usage::

    python benchmarks/tui_responsiveness.py [--seconds 4] [--size 200x50]

It prints both figures and exits 0; it is a measurement, not a test.
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


def headless_rate(seconds: float) -> tuple[int, float]:
    """Instructions and wall seconds of the machine running with no screen."""
    m = native_machine(arg=ROUNDS)
    m.run(200_000)                       # past boot, as in the app
    start_insns = m.cpu.icount
    start = time.perf_counter()
    while time.perf_counter() - start < seconds and not m.stopped:
        m.run(500_000)
    return m.cpu.icount - start_insns, time.perf_counter() - start


async def in_app(seconds: float, size: tuple[int, int], presses_per_second: float,
                 kinds: tuple[str, ...] = ("typing", "pane")) -> dict:
    session = Session(native_machine(arg=ROUNDS))
    app = make_app(session=session, theme="textual-dark")
    frames: list[tuple[float, str]] = []
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        app.runner.run(200_000)
        app.runner.wait_idle(30)
        await pilot.pause(0.2)

        real_display = app._display

        cmd = app.main.cmd()

        def display(screen, renderable):          # record when each frame is composed, and what it shows
            if renderable is not None and not app._batch_count:
                frames.append((time.perf_counter(), (app.main.active_pane, cmd.value, id(app.focused))))
            return real_display(screen, renderable)

        app._display = display                   # type: ignore[method-assign]
        cpu = session.focus.cpu
        app.runner.run(None)
        while app.runner.mode != "running":
            await asyncio.sleep(0.001)
        insn0 = cpu.icount
        ui_cpu0 = time.thread_time()
        t0 = time.perf_counter()
        sim0 = app.runner.stats.sim_seconds
        latencies: dict[str, list[float]] = {"typing": [], "pane": []}
        gap = 1 / presses_per_second
        next_press = t0 + gap
        n = 0
        while time.perf_counter() - t0 < seconds:
            now = time.perf_counter()
            if now >= next_press:
                # Alternate: a letter typed at the prompt (echoed by the Input), and
                # ctrl+n (the next pane is drawn).
                n += 1
                kind = kinds[n % len(kinds)]
                key = events.Key("x", "x") if kind == "typing" else events.Key("ctrl+n", None)
                if kind == "typing" and (len(cmd.value) > 40 or not cmd.has_focus):
                    cmd.value = ""
                    cmd.focus()                 # on a large screen ctrl+n moved the focus away
                    await asyncio.sleep(0.1)
                before = (app.main.active_pane, cmd.value, id(app.focused))
                sent = time.perf_counter()
                app.post_message(key)
                deadline = sent + 2.0
                seen = None
                while time.perf_counter() < deadline:
                    await asyncio.sleep(0.001)
                    hit = [t for t, shown in frames if t >= sent and shown != before]
                    if hit:
                        seen = hit[0]
                        break
                latencies[kind].append((seen if seen is not None else deadline) - sent)
                next_press = time.perf_counter() + gap
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - t0
        ui_cpu = time.thread_time() - ui_cpu0
        insns = cpu.icount - insn0
        sim_busy = app.runner.stats.sim_seconds - sim0
        ticks = app.ticks
        app.runner.pause()
        app.runner.wait_idle(5)
    return {"instructions": insns, "seconds": elapsed, "latencies": latencies, "ticks": ticks,
            "ui_cpu": ui_cpu,
            "sim_busy": sim_busy, "frames": len(frames)}


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
    shows the booted machine; the second adds interpreter start-up and exit.
    Best of ``runs``.
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
    "typing": ("typing",),                 # what a learner mostly does while the machine runs
    "typing+panes": ("typing", "pane"),    # plus moving between panes: every other key is ctrl+n
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds of each measurement")
    ap.add_argument("--size", default="120x40", help="terminal size, e.g. 80x24 or 200x50")
    ap.add_argument("--presses", type=float, default=4.0, help="key presses per second")
    ap.add_argument("--mix", choices=sorted(MIXES) + ["both"], default="both",
                    help="which keys to press while the machine runs")
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.lower().split("x"))

    start_s, start_wall, ptk = startup_seconds()
    n_head, s_head = headless_rate(args.seconds)
    head_rate = n_head / s_head
    print(f"terminal {w}x{h}; {args.presses:g} key presses a second; {args.seconds:g} s per measurement")
    print(f"start-up to first full screen: {start_s * 1000:.0f} ms "
          f"(whole process including interpreter start and exit: {start_wall * 1000:.0f} ms; "
          f"prompt_toolkit loaded: {ptk})")
    print(f"headless simulator: {head_rate:,.0f} instructions/s")
    mixes = sorted(MIXES) if args.mix == "both" else [args.mix]
    for mix in mixes:
        r = asyncio.run(in_app(args.seconds, (w, h), args.presses, MIXES[mix]))
        app_rate = r["instructions"] / r["seconds"]
        print(f"\nkeys: {mix}")
        print(f"  simulator inside the app: {app_rate:,.0f} instructions/s ({app_rate / head_rate:.0%} of headless)")
        for kind, label in (("typing", "a letter at the prompt"), ("pane", "ctrl+n (next pane)")):
            ms = sorted(x * 1000 for x in r["latencies"][kind])
            if ms:
                p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
                print(f"  key to screen, {label + ':':<24} median {statistics.median(ms):5.1f} ms, "
                      f"p90 {p90:5.1f} ms, max {max(ms):5.1f} ms ({len(ms)} presses)")
        print(f"  frames composed {r['frames']}, screen ticks {r['ticks']}, "
              f"screen thread CPU {r['ui_cpu'] / r['seconds']:.0%} of the time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
