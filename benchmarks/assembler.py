"""What assembling costs on a cold start: the kernels and programs ``xenlab compare`` assembles.

A cold ``xenlab compare`` (empty ``$XENLAB_CACHE``) assembles nine sources: the
native kernel, the six guest kernels, the HVM firmware and the workload program,
every kernel including the same common files. Each run here is a fresh Python
process that assembles those nine in the order compare does and reports the CPU
time of the assembling alone (imports excluded); the figure is the median of
``--runs``, after one uncounted run that writes the bytecode cache.

``--compare`` also times whole cold ``xenlab compare`` runs (the eight x86 modes,
each with an empty cache directory; CPU time of the child process).

``--tree DIR`` measures another checkout of the lab as well, interleaved run by
run with this one, so both see the same load on a shared machine.
``--profile`` prints where one assembling run's CPU goes (cProfile).

Usage::

    python benchmarks/assembler.py [--runs 5] [--compare] [--tree DIR] [--profile]

It prints the figures and exits 0; it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: What a cold compare assembles, in its order (kernels/..., programs/..., firmware/...).
SOURCES = ["kernels/native.s", "programs/workload.s", "kernels/pv.s", "kernels/pv32.s", "kernels/hvm.s",
           "firmware/hvmloader.s", "kernels/hvm_pvdrivers.s", "kernels/pvhvm.s", "kernels/pvh.s"]
MODES = "native,pv,pv32,hvm,hvm-shadow,hvm-pvdrivers,pvhvm,pvh"

_CHILD = """
import sys, time
from lab.isa.assembler import assemble_file
from lab.paths import KERNELS, MACHINES, PROGRAMS
names = sys.argv[1:]
start = time.process_time()
for name in names:
    assemble_file(MACHINES / name, include_dirs=[KERNELS, PROGRAMS])
print(time.process_time() - start)
"""

_PROFILE = """
import cProfile, pstats, sys
from lab.isa.assembler import assemble_file
from lab.paths import KERNELS, MACHINES, PROGRAMS
names = sys.argv[1:]
with cProfile.Profile() as prof:
    for name in names:
        assemble_file(MACHINES / name, include_dirs=[KERNELS, PROGRAMS])
pstats.Stats(prof).sort_stats("tottime").print_stats(25)
"""


def _env(tree: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def assemble_cpu(tree: Path) -> float:
    out = subprocess.run([sys.executable, "-c", _CHILD, *SOURCES], cwd=tree, env=_env(tree), check=True,
                         capture_output=True, text=True).stdout
    return float(out)


def compare_cpu(tree: Path) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as cache:
        subprocess.run([sys.executable, "-m", "lab.cli", "compare", "--modes", MODES], cwd=tree,
                       env=dict(_env(tree), XENLAB_CACHE=cache), check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--compare", action="store_true", help="also time whole cold compare runs")
    ap.add_argument("--tree", type=Path, help="another checkout to measure, interleaved with this one")
    ap.add_argument("--profile", action="store_true", help="print where one assembling run's CPU goes")
    args = ap.parse_args()
    if args.profile:
        subprocess.run([sys.executable, "-c", _PROFILE, *SOURCES], cwd=ROOT, env=_env(ROOT), check=True)
        return 0
    trees = {"this tree": ROOT}
    if args.tree:
        trees["other tree"] = args.tree.resolve()
    for tree in trees.values():
        assemble_cpu(tree)                  # uncounted: writes the bytecode cache
    asm: dict[str, list[float]] = {k: [] for k in trees}
    cmp: dict[str, list[float]] = {k: [] for k in trees}
    for _ in range(args.runs):
        for name, tree in trees.items():
            asm[name].append(assemble_cpu(tree))
            if args.compare:
                cmp[name].append(compare_cpu(tree))
    print(f"load average {os.getloadavg()[0]:.2f}")
    for name in trees:
        runs = " ".join(f"{t:.3f}" for t in asm[name])
        print(f"{name}: assembling {len(SOURCES)} sources, CPU median {statistics.median(asm[name]):.3f} s ({runs})")
        if args.compare:
            runs = " ".join(f"{t:.2f}" for t in cmp[name])
            print(f"{name}: cold compare, CPU median {statistics.median(cmp[name]):.2f} s ({runs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
