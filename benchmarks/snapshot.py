"""How fast the Xen host saves and loads its whole state, and what snapshots cost in memory.

The machine is the default scenario (Domain-0, a PV and an HVM guest) with the
guests' workload made long enough to keep running for the whole measurement.
It prints:

* full snapshot: the first snapshot of the host (nothing to share with);
* full restore: back to a snapshot after the host ran on 250 k instructions;
* incremental snapshot: one 250 k instructions after the previous one, its
  time and the memory it adds to the snapshots before it;
* snapshots every 250 k instructions over a 10 M instruction run: their memory
  together (what they share counted once), and the run's time with and without
  them.

Usage::

    python benchmarks/snapshot.py [--instructions 10000000] [--every 250000]

It prints the figures and exits 0; it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.hw.snapshot import snapshot_nbytes  # noqa: E402
from lab.session.scenario import DEFAULT_SCENARIO, boot_host, load_scenario  # noqa: E402

ROUNDS = 600            # workload rounds: long enough never to finish during a measurement
WARM_UP = 300_000       # instructions run before measuring (past boot)


def build_host():
    sc = load_scenario(DEFAULT_SCENARIO)
    host, xl = boot_host(sc.host, sc.dom0_memory, sc.dom0_vcpus)
    for cfg in sc.domains:
        conf = xl.load(cfg, sc.path.parent)
        conf.cmdline = f"{conf.cmdline or ''} rounds={ROUNDS}".strip()
        xl.create(conf)
    return host


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def timed(fn):
    """(wall time, CPU time of this process, result): on a shared computer the CPU time
    is the steadier figure."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - c, out


def figures(pairs) -> str:
    wall = [w for w, _c in pairs]
    cpu = [c for _w, c in pairs]
    return (f"median {ms(statistics.median(wall))} wall / {ms(statistics.median(cpu))} CPU, "
            f"worst {ms(max(wall))} wall / {ms(max(cpu))} CPU")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instructions", type=int, default=10_000_000)
    ap.add_argument("--every", type=int, default=250_000)
    args = ap.parse_args()
    os.environ.setdefault("XENLAB_DATA", tempfile.mkdtemp(prefix="xenlab-bench-"))

    host = build_host()
    host.run(WARM_UP)
    print(f"default scenario, {len(host.domains)} domains, {len(host.mem.frames)} memory frames in use, "
          f"{len(host.mm.pv.pages)} frame-table entries")

    fulls, restores, digests = [], [], []
    for _ in range(5):
        host.__dict__.pop("_keeper", None)              # a fresh keeper: nothing to share with
        w, c, snap = timed(host.snapshot)
        fulls.append((w, c))
        digest = host.digest()
        host.run(args.every)
        w, c, _ = timed(lambda: host.restore(snap))
        restores.append((w, c))
        digests.append(host.digest() == digest)
        host.run(args.every)
    print(f"full snapshot: {figures(fulls)}")
    print(f"full restore:  {figures(restores)}{'' if all(digests) else '  (DIGEST MISMATCH)'}")
    print(f"one full snapshot alone: {mib(snapshot_nbytes([snap]))}")

    # Snapshots every --every instructions over the whole run.
    host = build_host()
    host.run(WARM_UP)
    start = host.instructions
    t_plain, _c, _ = timed(lambda: host.run(args.instructions))
    plain_done = host.instructions - start

    host = build_host()
    host.run(WARM_UP)
    start = host.instructions
    snaps, times = [], []
    t0 = time.perf_counter()
    while host.instructions - start < args.instructions:
        before = host.instructions
        host.run(args.every)
        if host.instructions == before:
            print("the guests stopped before the end of the run")
            break
        w, c, s = timed(host.snapshot)
        snaps.append(s)
        times.append((w, c))
    t_snap = time.perf_counter() - t0
    done = host.instructions - start
    total = snapshot_nbytes(snaps)
    first = snapshot_nbytes(snaps[:1])
    incr = (total - first) / max(1, len(snaps) - 1)
    print(f"incremental snapshot every {args.every:,} instructions: {figures(times[1:])}, "
          f"adds {mib(int(incr))} on average")
    print(f"{len(snaps)} snapshots over {done:,} instructions: {mib(total)} together "
          f"(the first {mib(first)})")
    print(f"run of {plain_done:,} instructions: {t_plain:.1f} s without snapshots, "
          f"{t_snap:.1f} s taking them ({(t_snap / t_plain - 1) * 100:+.1f}%)")
    host.restore(snaps[len(snaps) // 2])
    print(f"restore to the middle of the run: digest {host.digest()}")


if __name__ == "__main__":
    main()
