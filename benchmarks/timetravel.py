"""Time travel and recordings: how fast, how big.

Builds a session of about ``--insns`` guest instructions (default 10 million)
out of ordinary inputs (runs of ``--run`` instructions, with ``xl list``,
``regs`` and console input between them), recording it, and measures:

* recording overhead: the same session with and without a recording, as
  guest instructions per second (the two alternate, so a change in the
  computer's speed touches both alike);
* the recording's size: the whole file, and the part after the header
  (inputs and digests) per 10 million instructions;
* seek: to ``--seeks`` seeded random points of the session, median and worst;
* back one instruction, from random points: median and worst;
* the memory the saved states hold at the end.

The target is the bare machine (``native``: the native kernel with the
workload's rounds raised so it never ends) or the default Xen scenario
(``xen``: dom0, a PV and an HVM guest, their workload's rounds raised). It
prints which path time travel took: saved states (the machine has
``snapshot()``/``restore()``) or rebuilding from the sources.

Usage::

    python benchmarks/timetravel.py [--target native|xen] [--insns 10000000] [--run 500000] [--seeks 20]

It prints the figures and exits 0; it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.paths import KERNELS, MACHINES  # noqa: E402
from lab.session.commands import execute  # noqa: E402
from lab.session.live import open_session  # noqa: E402
from lab.session.recorder import stop_recording  # noqa: E402

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


def drive(session, lines: list[str]) -> float:
    start = time.perf_counter()
    for line in lines:
        execute(session, line)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", choices=("native", "xen"), default="native")
    ap.add_argument("--insns", type=int, default=10_000_000)
    ap.add_argument("--run", type=int, default=500_000)
    ap.add_argument("--seeks", type=int, default=20)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="xenlab-tt-"))
    lines = inputs(args.insns, args.run, args.target == "xen")

    # Recording overhead: alternate plain and recorded halves of the same session.
    half = lines[:max(2, len(lines) // 4)]
    plain_s = rec_s = 0.0
    plain_n = rec_n = 0
    for turn in range(2):
        for recorded in (False, True):
            s = session_for(args.target, tmp, tmp / f"o{turn}.jsonl" if recorded else None)
            secs = drive(s, half)
            n = s.clock()[0]
            if recorded:
                rec_s, rec_n = rec_s + secs, rec_n + n
                stop_recording(s)
            else:
                plain_s, plain_n = plain_s + secs, plain_n + n
            s.stop_watching()
    plain_ips, rec_ips = plain_n / plain_s, rec_n / rec_s
    overhead = (plain_ips - rec_ips) / plain_ips * 100

    path = tmp / "session.jsonl"
    session = session_for(args.target, tmp, path)
    tm = session.time_machine
    secs = drive(session, lines)
    total = tm.now()
    stop_recording(session)
    size = path.stat().st_size
    header = len(path.read_bytes().split(b"\n", 1)[0]) + 1
    per_10m = (size - header) * 10_000_000 / max(1, total)

    rng = random.Random(2024)
    points = [rng.randrange(0, total + 1) for _ in range(args.seeks)]
    seek_ms = []
    for x in points:
        t0 = time.perf_counter()
        tm.seek_insns(x)
        seek_ms.append((time.perf_counter() - t0) * 1000)
        assert tm.now() == x, (tm.now(), x)
    back_ms = []
    for x in points[: max(3, args.seeks // 2)]:
        tm.seek_insns(max(1, x))
        t0 = time.perf_counter()
        execute(session, "back 1")
        back_ms.append((time.perf_counter() - t0) * 1000)
    path_name = "saved states (snapshot/restore)" if tm.can_snapshot else "rebuild from the sources"

    print(f"target:                       {args.target} ({len(lines)} inputs, {total:,} instructions)")
    print(f"time travel path:             {path_name}")
    print(f"session time:                 {secs:.1f} s ({total / secs:,.0f} instructions/s, recorded)")
    print(f"recording overhead:           {overhead:+.1f}% ({plain_ips:,.0f} vs {rec_ips:,.0f} insn/s)")
    print(f"recording size:               {size:,} bytes ({header:,} header with the sources)")
    print(f"  inputs and digests:         {per_10m / 1024:,.1f} KiB per 10 M instructions")
    print(f"seek ({len(seek_ms)} points):              median {statistics.median(seek_ms):,.0f} ms, "
          f"worst {max(seek_ms):,.0f} ms")
    print(f"back one instruction:         median {statistics.median(back_ms):,.0f} ms, "
          f"worst {max(back_ms):,.0f} ms")
    print(f"saved states:                 {len(tm._saved)} holding about {tm.saved_bytes() / 2**20:,.1f} MiB")
    session.stop_watching()
    return 0


if __name__ == "__main__":
    sys.exit(main())
