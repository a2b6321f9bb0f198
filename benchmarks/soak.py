"""Memory over a long run: the default lab's guests idle at their shell prompts, at full speed.

Boots the default scenario (Domain-0, a PV, an HVM and a PVHVM guest) with each
guest started into its shell, waits for the prompts, then runs the host flat out for
the time asked, printing every interval: guest instructions, trace events (all
kept: the last ones in memory, all of them in the trace's spill file on disk),
the spill file's size and the process's resident memory. At the end it prints
the growth of resident memory per minute of CPU time once the trace's window
has filled, and what that would make after an hour at full speed.

Usage::

    python benchmarks/soak.py [--minutes 5] [--interval 10] [--guests pv,hvm,pvhvm]

The PV and HVM kernels are tickless: idle at their prompts they arm no timer, so
alone they would stop the host at once. The PVHVM kernel polls COM1 on a 10 ms
deadline, which keeps the host running with idle guests.

It prints the figures and exits 0; it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.dom0.xlcfg import DomainConfig  # noqa: E402
from lab.paths import KERNELS  # noqa: E402
from lab.session.scenario import DEFAULT_SCENARIO, boot_host, load_scenario  # noqa: E402

KERNEL = {"pv": ("pv", "pv.s"), "pv32": ("pv", "pv32.s"), "hvm": ("hvm", "hvm.s"), "pvh": ("pvh", "pvh.s"),
          "pvhvm": ("hvm", "pvhvm.s"), "hvm-pvdrivers": ("hvm", "hvm_pvdrivers.s")}
CHUNK = 50_000          # instructions per host.run call between measurements
PROMPT = "guest# "


def resident_mib() -> float:
    """Resident set size now (not the peak), from /proc."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def boot(guests: list[str]):
    """The default host with ``guests`` booted to their shell prompts: (host, xl)."""
    sc = load_scenario(DEFAULT_SCENARIO)
    host, xl = boot_host(sc.host, sc.dom0_memory, sc.dom0_vcpus)
    doms = []
    for k, mode in enumerate(guests):
        type_, kernel = KERNEL[mode]
        conf = DomainConfig(name=f"idle-{mode}-{k}", type=type_, memory=32, maxmem=32,
                            kernel=str(KERNELS / kernel), lab_pv32=mode == "pv32", cmdline="shell",
                            filename=f"<soak {mode}>")
        doms.append(xl.create(conf))
    host.run(20_000_000, stop=lambda: all(d.console_output.endswith(PROMPT) for d in doms))
    for d in doms:
        if not d.console_output.endswith(PROMPT):
            sys.exit(f"{d.name} never reached its shell prompt:\n{d.console_output[-400:]}")
    return host, xl


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between lines")
    ap.add_argument("--guests", default="pv,hvm,pvhvm", help="guest modes, comma-separated")
    args = ap.parse_args()
    host, _xl = boot(args.guests.split(","))
    trace = host.trace
    start = time.monotonic()
    cpu0 = time.process_time()
    i0 = host.instructions
    samples: list[tuple[float, float]] = []
    print(f"{'seconds':>8} {'instructions':>14} {'M/s (CPU)':>10} {'events':>12} {'in memory':>10} "
          f"{'spill MiB':>10} {'RSS MiB':>8}")
    next_line = 0.0
    while True:
        now = time.monotonic() - start
        if now >= next_line:
            rss = resident_mib()
            done = host.instructions - i0
            cpu = time.process_time() - cpu0
            samples.append((cpu, rss))
            rate = done / cpu / 1e6 if cpu else 0.0
            print(f"{now:8.0f} {done:14,} {rate:10.2f} {len(trace):12,} {len(trace.recent()):10,} "
                  f"{trace.spilled_bytes / (1 << 20):10.1f} {rss:8.1f}", flush=True)
            next_line += args.interval
            if now >= args.minutes * 60:
                break
        if not host.run(CHUNK):
            # Tickless guests at their prompts arm no timer: nothing happens until input.
            print("every vCPU is blocked with no timer armed: the host has nothing to run until input")
            break
    # Growth per minute of CPU time (a shared computer gives the lab less than the wall
    # clock), after the trace's window has filled (the first tenth of the run).
    late = [s for s in samples if s[0] >= samples[-1][0] / 10] or samples
    if len(late) >= 2 and late[-1][0] > late[0][0]:
        per_min = (late[-1][1] - late[0][1]) / ((late[-1][0] - late[0][0]) / 60)
        hour = late[-1][1] + per_min * (60 - late[-1][0] / 60)
        print(f"resident memory grew {per_min:+.2f} MiB per CPU-minute once the window was full; "
              f"at that rate an hour at full speed would end at {hour:.0f} MiB")
    done = host.instructions - i0
    cpu = time.process_time() - cpu0
    print(f"{done:,} guest instructions, {len(trace):,} events in {cpu:.1f} s of CPU "
          f"({done / cpu / 1e6:.2f} M/s); spill file {trace.spilled_bytes / (1 << 20):.1f} MiB "
          f"({trace.spilled_bytes / max(len(trace), 1):.1f} bytes an event)")


if __name__ == "__main__":
    main()
