"""Memory over a long run: the default lab kept busy at full speed, its trace filling.

Boots the default scenario (Domain-0) with idle PV, HVM and PVHVM guests at their
shell prompts, and beside them one guest that runs the workload again and again
from its shell: at each prompt it is typed the next of a few commands (cpuid,
syscall, touch, stats), then ``run``; when the workload ends the kernel powers the
guest off, and it is destroyed and created again. So the whole run has what an hour
at full speed in the lab has: domains built and torn down, boots through xenstore,
console input and output, system calls, demand faults, VM exits and the device
model's I/O, every one of them traced. It runs the host flat out for the time asked,
printing every interval: guest instructions, trace events (all kept: the last ones
in memory, all of them in the trace's spill file on disk), the spill file's size, the
bytes held in Xen's console ring (``xl dmesg``, bounded as Xen bounds it) and the
process's resident memory. At the end it prints the growth of resident memory
per minute of CPU time once the trace's window has filled, and what that would make
after an hour at full speed.

Usage::

    python benchmarks/soak.py [--minutes 5] [--interval 10] [--guests pv,hvm,pvhvm] [--busy hvm]

Every shipped guest kernel is tickless: idle at its prompt it arms no timer, so idle
guests alone would stop the host at once (``--busy none`` shows it). The busy
guest is what keeps the host running.

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
from lab.session.commands import type_into_console  # noqa: E402
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


def shell_config(name: str, mode: str, **keys) -> DomainConfig:
    """A 32 MiB guest of ``mode`` that starts its shell."""
    type_, kernel = KERNEL[mode]
    return DomainConfig(name=name, type=type_, memory=32, maxmem=32, kernel=str(KERNELS / kernel),
                        lab_pv32=mode == "pv32", cmdline="shell", filename=f"<soak {mode}>", **keys)


def boot(guests: list[str]):
    """The default host with ``guests`` booted to their shell prompts: (host, xl)."""
    sc = load_scenario(DEFAULT_SCENARIO)
    host, xl = boot_host(sc.host, sc.dom0_memory, sc.dom0_vcpus)
    doms = [xl.create(shell_config(f"idle-{mode}-{k}", mode)) for k, mode in enumerate(guests)]
    host.run(20_000_000, stop=lambda: all(d.console_output.endswith(PROMPT) for d in doms))
    for d in doms:
        if not d.console_output.endswith(PROMPT):
            sys.exit(f"{d.name} never reached its shell prompt:\n{d.console_output[-400:]}")
    return host, xl


class BusyGuest:
    """A guest that runs the workload again and again from its shell.

    At each prompt it is typed the next of COMMANDS (on its primary console, as
    ``xl console`` would); the last, ``run``, ends in the kernel powering the guest off.
    The guest is kept after its power-off (``on_poweroff="preserve"``) so that its
    instructions are counted, then destroyed and created again."""

    COMMANDS = ("cpuid", "syscall", "touch", "stats", "run")

    def __init__(self, host, xl, mode: str) -> None:
        self.host, self.xl, self.mode = host, xl, mode
        self.retired = 0                # instructions of the guests already destroyed
        self.runs = 0                   # workloads run to their end
        self._start()

    def _start(self) -> None:
        self.dom = self.xl.create(shell_config(f"busy-{self.mode}", self.mode, on_poweroff="preserve"))
        self.next_command = 0
        self.answered = 0               # console output already answered with a command

    def wants_attention(self) -> bool:
        """The guest has stopped, or waits at a new prompt for its next command."""
        # counted in characters ever written: the console log keeps only its newest 1 MiB
        log = self.dom.console_log
        return not self.dom.alive or (log.total > self.answered and log.text.endswith(PROMPT))

    def attend(self) -> None:
        if not self.dom.alive:
            if self.dom.shutdown_reason != "poweroff" or "program exited with code 0" not in self.dom.console_output:
                sys.exit(f"{self.dom.name} stopped ({self.dom.state}, {self.dom.shutdown_reason}):\n"
                         f"{self.dom.console_output[-400:]}")
            self.retired += sum(v.cpu.icount for v in self.dom.vcpus if v.cpu is not None)
            self.runs += 1
            self.xl.destroy(self.dom.name)
            self._start()
        elif self.wants_attention():
            self.answered = self.dom.console_log.total
            type_into_console(self.host, self.dom, self.COMMANDS[self.next_command] + "\n")
            self.next_command += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between lines")
    ap.add_argument("--guests", default="pv,hvm,pvhvm", help="idle guest modes, comma-separated")
    ap.add_argument("--busy", default="hvm", choices=[*KERNEL, "none"],
                    help="mode of the guest that runs the workload again and again (none: idle guests only)")
    args = ap.parse_args()
    host, xl = boot(args.guests.split(","))
    busy = None if args.busy == "none" else BusyGuest(host, xl, args.busy)
    trace = host.trace
    start = time.monotonic()
    cpu0 = time.process_time()

    def instructions() -> int:
        return host.instructions + (busy.retired if busy else 0)

    i0 = instructions()
    samples: list[tuple[float, float]] = []
    print(f"{'seconds':>8} {'instructions':>14} {'M/s (CPU)':>10} {'events':>12} {'in memory':>10} "
          f"{'spill MiB':>10} {'dmesg B':>8} {'RSS MiB':>8}")
    next_line = 0.0
    while True:
        now = time.monotonic() - start
        if now >= next_line:
            rss = resident_mib()
            done = instructions() - i0
            cpu = time.process_time() - cpu0
            samples.append((cpu, rss))
            rate = done / cpu / 1e6 if cpu else 0.0
            print(f"{now:8.0f} {done:14,} {rate:10.2f} {len(trace):12,} {len(trace.recent()):10,} "
                  f"{trace.spilled_bytes / (1 << 20):10.1f} {host.dmesg.used:8,} {rss:8.1f}", flush=True)
            next_line += args.interval
            if now >= args.minutes * 60:
                break
        if busy is not None:
            busy.attend()
        if not host.run(CHUNK, stop=busy.wants_attention if busy else None) and not (busy and busy.wants_attention()):
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
    done = instructions() - i0
    cpu = time.process_time() - cpu0
    if busy is not None:
        print(f"the busy {busy.mode} guest ran the workload to its end {busy.runs} times")
    print(f"{done:,} guest instructions, {len(trace):,} events in {cpu:.1f} s of CPU "
          f"({done / cpu / 1e6:.2f} M/s); spill file {trace.spilled_bytes / (1 << 20):.1f} MiB "
          f"({trace.spilled_bytes / max(len(trace), 1):.1f} bytes an event)")
    ring = host.dmesg
    print(f"Xen's console ring: {ring.logged:,} lines ({ring.written:,} bytes) logged, "
          f"{len(ring):,} lines ({ring.used:,} bytes) held in its {ring.size:,} bytes")


if __name__ == "__main__":
    main()
