"""Time travel and recordings: how fast, how big.

Builds a session of about ``--insns`` guest instructions (default 10 million)
out of ordinary inputs (runs of ``--run`` instructions, with ``xl list``,
``regs`` and console input between them), recording it, and measures:

* recording overhead: the first quarter of the session with and without a
  recording, as guest instructions per CPU second (process time, so other
  jobs on a shared machine touch it little); the two alternate ``--turns``
  times after a first turn that only warms up, so a change in the computer's speed touches both alike, and the
  median of the turns' overheads is printed;
* the recording's size: the whole file, and the part after the header
  (inputs and digests) per 10 million instructions;
* seek: to ``--seeks`` seeded random points of the session, median and worst,
  in CPU time and in wall time;
* back one instruction, from random points: median and worst, likewise;
* the memory the saved states hold at the end;
* the load average before and after, to say how busy the computer was.

The target is the bare machine (``native``: the native kernel with the
workload's rounds raised so it never ends) or the default Xen scenario
(``xen``: dom0, a PV and an HVM guest, their workload's rounds raised so
that they run the whole session: as shipped they finish after about 0.7
million instructions). ``--insns`` sets the session's length. It
prints which path time travel took: saved states (the machine has
``snapshot()``/``restore()``) or rebuilding from the sources.

Usage::

    python benchmarks/timetravel.py [--target native|xen] [--insns 10000000] [--run 500000] [--seeks 20] [--turns 3]

It prints the figures and exits 0; it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.paths import KERNELS, MACHINES  # noqa: E402
from lab.session.commands import execute  # noqa: E402
from lab.session.live import open_session  # noqa: E402
from lab.session.recorder import SessionRecorder, stop_recording  # noqa: E402
from lab.session.timetravel import TimeMachine  # noqa: E402

ROUNDS = 1 << 40       # the workload's rounds: far more than any measurement runs


def xen_scenario(tmp: Path) -> str:
    """The default scenario with its guests' workload long enough never to end."""
    for name in ("pv-guest", "hvm-guest"):
        text = (MACHINES / f"{name}.cfg").read_text()
        lines = [ln for ln in text.splitlines() if not ln.startswith(("kernel", "cmdline"))]
        mode = "pv" if name.startswith("pv") else "hvm"
        lines += [f'kernel = "{KERNELS / (mode + ".s")}"', f'cmdline = "rounds={ROUNDS}"']
        (tmp / f"{name}.cfg").write_text("\n".join(lines) + "\n")
    scenario = (MACHINES / "default.toml").read_text()
    (tmp / "long.toml").write_text(scenario)
    return str(tmp / "long.toml")


def inputs(total: int, run: int, xen: bool) -> list[str]:
    lines: list[str] = []
    done = 0
    k = 0
    while done < total:
        lines.append(f"run {run}")
        done += run
        k += 1
        extra = ["regs", "xl list" if xen else "events 3", "mark m%d" % k,
                 "console pv-guest ls" if xen else "console bare ls"]
        lines.append(extra[k % len(extra)])
    return lines


def session_for(target: str, tmp: Path, record: Path | None):
    if target == "xen":
        return open_session([xen_scenario(tmp)], record=record)
    return open_session([str(KERNELS / "native.s")], arg=ROUNDS, record=record)


def drive(session, lines: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) to give the session these command lines."""
    start, cpu = time.perf_counter(), time.process_time()
    for line in lines:
        execute(session, line)
    return time.perf_counter() - start, time.process_time() - cpu


def timed(fn) -> tuple[float, float]:
    """(wall ms, CPU ms) of one call."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - start) * 1000, (time.process_time() - cpu) * 1000


RECORDING_CPU = [0.0]       # CPU seconds spent in the recorder's own work (its listeners)
SAVING_CPU = [0.0]          # ... and in saving states for time travel along the live session


def count_work() -> None:
    """Time every call into the recorder: its share of the session's CPU time is the overhead
    too, measured without the noise of comparing two runs on a shared computer. Likewise the
    time machine's saving of states (not the recording's cost, but the simulator's)."""
    for cls, name, total in [(SessionRecorder, n, RECORDING_CPU) for n in ("_on_input", "_on_applied",
                                                                           "_on_checkpoint")] + \
            [(TimeMachine, "_save", SAVING_CPU)]:
        plain = getattr(cls, name)

        def timed_call(self, *a, _plain=plain, _total=total, **kw):
            start = time.process_time()
            try:
                return _plain(self, *a, **kw)
            finally:
                _total[0] += time.process_time() - start
        setattr(cls, name, timed_call)


def spread(ms: list[float]) -> str:
    return f"median {statistics.median(ms):,.0f} ms, worst {max(ms):,.0f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", choices=("native", "xen"), default="native")
    ap.add_argument("--insns", type=int, default=10_000_000, help="the session's length in instructions")
    ap.add_argument("--run", type=int, default=500_000)
    ap.add_argument("--seeks", type=int, default=20)
    ap.add_argument("--turns", type=int, default=3, help="alternations of the overhead measurement")
    args = ap.parse_args()
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="xenlab-tt-"))
    lines = inputs(args.insns, args.run, args.target == "xen")

    # Recording overhead: alternate plain and recorded runs of the same quarter session.
    half = lines[:max(2, len(lines) // 4)]
    overheads = []
    plain_ips = rec_ips = 0.0
    for turn in range(args.turns + 1):
        speed = {}
        for recorded in (False, True):
            s = session_for(args.target, tmp, tmp / f"o{turn}.jsonl" if recorded else None)
            _wall, cpu = drive(s, half)
            speed[recorded] = s.clock()[0] / cpu
            if recorded:
                stop_recording(s)
            s.stop_watching()
        if turn == 0:
            continue                # a first turn warms the process's caches (the first run is slow)
        plain_ips, rec_ips = plain_ips + speed[False], rec_ips + speed[True]
        overheads.append((speed[False] - speed[True]) / speed[False] * 100)
    plain_ips, rec_ips = plain_ips / args.turns, rec_ips / args.turns

    path = tmp / "session.jsonl"
    count_work()
    session = session_for(args.target, tmp, path)
    tm = session.time_machine
    secs, cpu_secs = drive(session, lines)
    total = tm.now()
    recording_cpu, saving_cpu = RECORDING_CPU[0], SAVING_CPU[0]
    stop_recording(session)
    size = path.stat().st_size
    header = len(path.read_bytes().split(b"\n", 1)[0]) + 1
    per_10m = (size - header) * 10_000_000 / max(1, total)
    kinds: dict[str, int] = {}
    for ln in path.read_text().splitlines()[1:]:
        kind = json.loads(ln)
        key = kind["t"] + (f" ({kind['at']})" if kind["t"] == "digest" else "")
        kinds[key] = kinds.get(key, 0) + 1

    rng = random.Random(2024)
    points = [rng.randrange(0, total + 1) for _ in range(args.seeks)]
    seek_wall, seek_cpu = [], []
    for x in points:
        wall, cpu = timed(lambda: tm.seek_insns(x))
        seek_wall.append(wall)
        seek_cpu.append(cpu)
        assert tm.now() == x, (tm.now(), x)
    back_wall, back_cpu = [], []
    for x in points[: max(3, args.seeks // 2)]:
        tm.seek_insns(max(1, x))
        wall, cpu = timed(lambda: execute(session, "back 1"))
        back_wall.append(wall)
        back_cpu.append(cpu)
    path_name = "saved states (snapshot/restore)" if tm.can_snapshot else "rebuild from the sources"
    load_after = os.getloadavg()

    print(f"target:                       {args.target} ({len(lines)} inputs, {total:,} instructions)")
    print(f"load average:                 {load_before[0]:.2f} before, {load_after[0]:.2f} after "
          f"({os.cpu_count()} CPUs)")
    print(f"time travel path:             {path_name}")
    print(f"session time:                 {secs:.1f} s wall, {cpu_secs:.1f} s CPU "
          f"({total / cpu_secs:,.0f} instructions per CPU second, recorded)")
    print(f"recording overhead:           {recording_cpu / (cpu_secs - recording_cpu) * 100:.1f}% "
          f"(the recorder's own work: {recording_cpu * 1000:,.0f} ms CPU of the session's {cpu_secs:.1f} s)")
    print(f"saving states on the way:     {saving_cpu * 1000:,.0f} ms CPU of the session's {cpu_secs:.1f} s "
          f"(time travel's own cost, recorded or not)")
    print(f"  two runs compared:          {statistics.median(overheads):+.1f}% median of "
          f"{', '.join(f'{o:+.1f}%' for o in overheads)} ({plain_ips:,.0f} vs {rec_ips:,.0f} insn/CPU s)")
    print(f"recording size:               {size:,} bytes ({header:,} header with the sources)")
    print(f"  inputs and digests:         {per_10m / 1024:,.1f} KiB per 10 M instructions "
          f"({per_10m / 1000:,.1f} KB)")
    print(f"  lines:                      {', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}")
    print(f"seek ({len(seek_cpu)} points), CPU:         {spread(seek_cpu)}")
    print(f"seek ({len(seek_wall)} points), wall:        {spread(seek_wall)}")
    print(f"back one instruction, CPU:    {spread(back_cpu)}")
    print(f"back one instruction, wall:   {spread(back_wall)}")
    print(f"saved states:                 {len(tm._saved)} holding about {tm.saved_bytes() / 2**20:,.1f} MiB")
    session.stop_watching()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
