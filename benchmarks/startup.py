"""How long the lab's screen takes to start, in a real terminal.

Starts ``xenlab`` (the default Xen scenario) in tmux and reads the terminal
every 10 ms until the first full frame: the domains list (``hvm-guest``) and
the status bar's host clock on screen, that is the machine booted and drawn.
For each run it notes the wall time from starting the program and the CPU time
the lab's process had used by then (read from ``/proc``: on a shared computer
the wall time stretches with the load, the CPU time much less).

Two kinds of start, each the median of ``--runs`` (after a first, uncounted run
that writes the bytecode cache, as the first start after installing does):

* warm: the lab's cache (assembled kernels, ``$XENLAB_CACHE``) is filled, as on
  every start but the first;
* cold: the lab's cache is empty, so the guests' kernels are assembled.

It also measures the start headless (``App.run_test``, no terminal), and can
print where the start-up's CPU goes (``--profile``, cProfile of the screen's
thread and the simulation thread's boot, on the thread runner). The CPU time
counted is the screen's process and the simulation's (its child) together; with
``XENLAB_SIM_THREAD=1`` in the environment the lab starts on the thread runner.

Usage::

    python benchmarks/startup.py [--size 120x40] [--runs 5] [--profile]

It prints the figures and exits 0; it is a measurement, not a test. tmux must be
installed for the terminal figures; every tmux server it starts is its own and
is killed before it exits.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLL = 0.01             # seconds between two looks at the terminal
GIVE_UP = 60.0          # seconds before a run counts as failed


def lab_env(bytecode: str, cache: str, data: str) -> dict[str, str]:
    """The environment of a learner's installed lab: bytecode written and read (in
    ``bytecode``), the lab's cache in ``cache`` and its data (recordings) in ``data``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPYCACHEPREFIX=bytecode, XENLAB_CACHE=cache, XENLAB_DATA=data)
    return env


def full_frame(screen: str) -> bool:
    """The first full frame: the booted machine's domains and the status bar's host clock
    (``host clock``, or ``host clk`` on a narrow terminal)."""
    return "hvm-guest" in screen and ("host clock" in screen or "host clk" in screen)


def _stat(pid: int | str) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU time of process ``pid`` and of its children so far (Linux), or
    None: the screen's process and the simulation's, forked from it."""
    fields = _stat(pid)
    if fields is None:
        return None
    ticks = int(fields[11]) + int(fields[12])
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            child = _stat(entry)
            if child is not None and child[1] == str(pid):
                ticks += int(child[11]) + int(child[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def in_terminal(runs: int, size: tuple[int, int], cold: bool) -> list[tuple[float, float | None]]:
    """(wall seconds, CPU seconds) to the first full frame, one per counted run."""
    out: list[tuple[float, float | None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        bytecode, cache, data = (os.path.join(tmp, d) for d in ("bytecode", "cache", "data"))
        env = lab_env(bytecode, cache, data)
        tmux = ["tmux", "-L", f"xenlab-startup-{os.getpid()}"]
        # exec: the pane's process is the lab itself, whose CPU time /proc gives
        cmd = f"cd {shlex.quote(str(ROOT))} && exec {shlex.quote(sys.executable)} -m lab.cli"
        # A server of our own, kept up by an idle session while the runs come and go.
        subprocess.run(tmux + ["new-session", "-d", "-s", "keep", "sleep 600"], check=True, env=env)
        try:
            for k in range(runs + 1):
                if cold:
                    shutil.rmtree(cache, ignore_errors=True)
                name = f"run{k}"
                start = time.perf_counter()
                subprocess.run(tmux + ["new-session", "-d", "-s", name, "-x", str(size[0]), "-y", str(size[1]),
                                       "-P", "-F", "#{pane_pid}", cmd], check=True, env=env,
                               capture_output=True, text=True)
                pid = int(subprocess.run(tmux + ["display-message", "-p", "-t", name, "#{pane_pid}"],
                                         capture_output=True, text=True).stdout.strip() or 0)
                try:
                    while time.perf_counter() - start < GIVE_UP:
                        screen = subprocess.run(tmux + ["capture-pane", "-p", "-t", name], capture_output=True,
                                                text=True).stdout
                        if full_frame(screen):
                            wall = time.perf_counter() - start
                            if k:
                                out.append((wall, cpu_seconds(pid) if pid else None))
                            break
                        time.sleep(POLL)
                finally:
                    subprocess.run(tmux + ["kill-session", "-t", name], capture_output=True)
        finally:
            subprocess.run(tmux + ["kill-server"], capture_output=True)
    return out


_HEADLESS = """
import time
t0 = time.perf_counter()
c0 = time.process_time()
import asyncio, os, sys
sys.path.insert(0, {root!r})
from lab.tui.launch import start_runner
runner = start_runner()
from lab.tui.app import make_app
async def main():
    app = make_app(theme="textual-dark", runner=runner)
    async with app.run_test(size=(120, 40)) as pilot:
        while app.view is None:
            await asyncio.sleep(0.002)
        await pilot.pause()
        cpu = time.process_time() - c0
        child = getattr(runner, "pid", None)          # the simulation's process, when it has one
        if child:
            with open(f"/proc/{{child}}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        print(time.perf_counter() - t0, cpu, "prompt_toolkit" in sys.modules)
asyncio.run(main())
"""


def headless(runs: int) -> list[tuple[float, float, bool]]:
    """(wall, CPU, prompt_toolkit loaded) from the program's first line to the first frame
    showing the booted machine, headless, as ``xenlab`` starts it (the machine booting
    while the screen loads)."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        env = lab_env(*(os.path.join(tmp, d) for d in ("bytecode", "cache", "data")))
        code = _HEADLESS.format(root=str(ROOT))
        for k in range(runs + 1):
            words = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                   env=env, cwd=ROOT).stdout.split()
            if k:
                out.append((float(words[0]), float(words[1]), words[2] == "True"))
    return out


_PROFILE = """
import cProfile, pstats, sys, asyncio
sys.path.insert(0, {root!r})
screen, boot = cProfile.Profile(), cProfile.Profile()
screen.enable()
import lab.tui.runner as runner_module
real_boot = runner_module.Runner._boot
def profiled_boot(self):
    boot.enable()
    try:
        real_boot(self)
        self._publish(force=True)
    finally:
        boot.disable()
runner_module.Runner._boot = profiled_boot
from lab.tui.launch import start_runner
runner = start_runner(process=False)       # the boot profiled in this process
from lab.tui.app import make_app
async def main():
    app = make_app(theme="textual-dark", runner=runner)
    async with app.run_test(size=(120, 40)) as pilot:
        while app.view is None:
            await asyncio.sleep(0.002)
        await pilot.pause()
        screen.disable()
asyncio.run(main())
for title, prof in (("screen thread", screen), ("simulation thread (boot)", boot)):
    print(f"\\n== {{title}}: by own time ==")
    pstats.Stats(prof).sort_stats("tottime").print_stats(12)
"""


def profile() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = lab_env(*(os.path.join(tmp, d) for d in ("bytecode", "cache", "data")))
        code = _PROFILE.format(root=str(ROOT))
        subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, cwd=ROOT)   # fill caches
        print(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                             cwd=ROOT).stdout)


def describe(runs: list[tuple[float, float | None]]) -> str:
    walls = [w for w, _ in runs]
    cpus = [c for _, c in runs if c is not None]
    text = (f"median {statistics.median(walls) * 1000:.0f} ms of {len(walls)} "
            f"({', '.join(f'{w * 1000:.0f}' for w in walls)})")
    if cpus:
        text += f"; CPU median {statistics.median(cpus) * 1000:.0f} ms"
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="120x40", help="terminal size, e.g. 120x40 or 200x50")
    ap.add_argument("--runs", type=int, default=5, help="counted runs of each kind (the median is shown)")
    ap.add_argument("--profile", action="store_true", help="also print where the start-up's CPU goes")
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.lower().split("x"))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"start-up of the screen on the default Xen scenario; load average {load:.2f} at the start")
    runs = headless(args.runs)
    print(f"headless (run_test 120x40) to the first frame with the booted machine: median "
          f"{statistics.median(r[0] for r in runs) * 1000:.0f} ms, CPU {statistics.median(r[1] for r in runs) * 1000:.0f} ms"
          f"; prompt_toolkit loaded: {any(r[2] for r in runs)}")
    if shutil.which("tmux") is None:
        print("in a terminal: no tmux here, not measured")
    else:
        for cold in (False, True):
            got = in_terminal(args.runs, (w, h), cold)
            label = "cold cache (kernels assembled)" if cold else "warm cache"
            print(f"in a terminal (tmux {w}x{h}), {label}, to the first full frame: "
                  + (describe(got) if got else "no full frame seen"))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.2f} at the end")
    if args.profile:
        profile()
    return 0


if __name__ == "__main__":
    sys.exit(main())
