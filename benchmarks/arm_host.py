"""How fast the Arm host runs: the shipped Arm scenario's guest, boot to power-off.

Boots ``machines/arm/arm.toml`` (Xen at EL2, Domain-0, one arm64 guest running
the workload's Arm translation), runs it to the end and prints the guest
instructions, the CPU time (not wall time: the machine may be shared), guest instructions per second and the process's
peak memory; a measurement, not a test. ``--rounds N`` runs the workload's
compute step N times (``cmdline = "rounds=N"``).

Usage::

    python benchmarks/arm_host.py [--rounds 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.dom0.arm.toolstack import ARM_MACHINES  # noqa: E402
from lab.session.scenario import boot_host, load_scenario  # noqa: E402


def once(rounds: int) -> tuple[int, float, str]:
    sc = load_scenario(ARM_MACHINES / "arm.toml")
    host, xl = boot_host(sc.host, sc.dom0_memory)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "guest.cfg"
        cfg.write_text(f'name = "arm-guest"\nmemory = 32\nkernel = "{ARM_MACHINES / "kernel.s"}"\n'
                       f'cmdline = "rounds={rounds}"\non_poweroff = "preserve"\n')
        dom = xl.create(cfg)
    start = time.process_time()
    host.run(500_000_000)
    wall = time.process_time() - start
    line = next((ln for ln in dom.console_output.splitlines() if "checksum" in ln), "(no checksum)")
    return dom.vcpus[0].cpu.icount, wall, line


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    best = None
    for _ in range(args.repeat):
        insns, wall, line = once(args.rounds)
        best = wall if best is None else min(best, wall)
    print(f"arm guest: {insns:,} instructions, best of {args.repeat}: {best:.2f} s, "
          f"{insns / best:,.0f} guest instructions/s; {line.strip()}")
    print(f"peak memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
