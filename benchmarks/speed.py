"""The lab's speed against py65 (a pure-Python 6502 emulator), measured in the same run.

Prints, in guest instructions per CPU-second:

* py65 running a 6502 loop (load, add, store, count, branch);
* ``xenlab bench``: the native kernel's workload, paging, privilege checks and tracing on,
  each run a process of its own as a learner runs it, timed in CPU seconds of the run
  (median of ``--repeat`` runs, each between two py65 figures);
* every mode's steady-state speed: the compared guest's workload made long, measured
  after its first ``--warm-up`` instructions;
* guests idle at their shell prompts, in guest instructions per CPU-second and in
  simulated seconds per CPU-second (what idle costs: the guests run only on their
  timers and events), with what the machine did per simulated second, or that no
  timer is armed anywhere (the host stops): a PV and an HVM guest (as ``soak.py``
  boots them) with the HVM guest with PV drivers, all tickless (the HVM kernels on
  the local APIC timer one-shot, woken by the UART's and the NIC's interrupts); the
  tickless guests whose input is a console ring (PV, 32-bit PV, PVH); and PVHVM (on
  Xen's PV timer, woken by hvc0's event and COM1's interrupt);
* what idle guests cost a busy one: a PV guest running the workload beside the idle PV
  and HVM guests against the same guest alone, in its instructions per CPU-second
  (medians of ``--repeat`` alternating runs);
* ``xenlab compare`` (the eight x86 modes) in CPU seconds, with the compiled-block cache
  warm from an earlier run and cold (an empty cache directory). Python may write
  the lab's own bytecode as an installed lab has it (``PYTHONDONTWRITEBYTECODE`` is
  dropped for these runs), so the figures are the lab's work, not Python's
  compiling of its modules. Each cold and warm pair sits between two py65
  measurements, and is also shown scaled to py65 at 2.1 M/s, the machine's speed
  when the targets (3.0 s cold, 2.0 s warm) were set.

The machine may be shared: the py65 figure is taken again between the lab's, and
each ratio uses the py65 figure nearest to it.

Usage::

    python benchmarks/speed.py [--seconds 3] [--modes pv,hvm] [--no-compare] [--idle-only] [--repeat 3]

py65 is a benchmark-only dependency: ``pip install py65`` (or the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab.dom0.xlcfg import DomainConfig  # noqa: E402
from lab.paths import KERNELS  # noqa: E402
from lab.session import compare as C  # noqa: E402
from lab.session.build import DEFAULT_PROGRAM  # noqa: E402
from lab.session.scenario import DEFAULT_SCENARIO, boot_host, load_scenario  # noqa: E402

#: 6502 at 0x0200: LDX #0; loop: TXA; CLC; ADC $10; STA $10; INX; BNE loop; INC $11; JMP loop
PROGRAM_6502 = bytes([0xA2, 0x00, 0x8A, 0x18, 0x65, 0x10, 0x85, 0x10, 0xE8, 0xD0, 0xF7,
                      0xE6, 0x11, 0x4C, 0x02, 0x02])
ROUNDS = 400            # workload rounds of a guest measured in steady state: it never ends first
#: The eight x86 modes ``xenlab compare`` is timed on (the target's "all eight modes").
COMPARED = ["native", "pv", "pv32", "hvm", "hvm-shadow", "hvm-pvdrivers", "pvhvm", "pvh"]


def py65_rate(seconds: float) -> float:
    from py65.devices.mpu6502 import MPU
    mpu = MPU()
    mpu.memory[0x200:0x200 + len(PROGRAM_6502)] = PROGRAM_6502
    mpu.pc = 0x200
    step = mpu.step
    n = 0
    start = time.process_time()
    while True:
        for _ in range(10_000):
            step()
        n += 10_000
        spent = time.process_time() - start
        if spent >= seconds:
            return n / spent


def bench_rate() -> tuple[float, dict]:
    """``xenlab bench`` as a learner runs it, a process of its own: guest instructions per
    CPU-second of its run (the machine's building, imports and assembling not counted)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out = subprocess.run([sys.executable, "-m", "lab.cli", "bench", "--json"], cwd=ROOT, env=env,
                         check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    return r["instructions"] / r["cpu_seconds"], r


def steady_rate(mode: str, seconds: float, warm_up: int) -> float:
    """Guest instructions per CPU-second of ``mode``'s guest, once past boot."""
    if mode == "native":
        from lab.session.build import native_machine
        m = native_machine(arg=ROUNDS)
        m.run(warm_up)
        cpu = m.cpu
        run = m.run
    else:
        spec = C.MODES[mode]
        sc = load_scenario(DEFAULT_SCENARIO)
        host, xl = boot_host(sc.host, sc.dom0_memory, sc.dom0_vcpus)
        conf = DomainConfig(name=f"{mode}-guest", type=spec["type"], memory=32, maxmem=32,
                            kernel=str(KERNELS / spec["kernel"]), lab_pv32=spec.get("pv32", False),
                            hap=spec.get("hap", True), lab_program=str(DEFAULT_PROGRAM),
                            cmdline=f"rounds={ROUNDS}", filename=f"<speed {mode}>")
        conf.disks, conf.vifs = C.guest_devices(mode)
        dom = xl.create(conf)
        host.run(warm_up)
        cpu = dom.vcpus[0].cpu
        run = host.run
    i0 = cpu.icount
    start = time.process_time()
    while time.process_time() - start < seconds:
        run(200_000)
    return (cpu.icount - i0) / (time.process_time() - start)


def idle_rates(seconds: float, guests: list[str]) -> tuple[float, float | None, dict[str, float]]:
    """``guests`` idle at their prompts: guest instructions per CPU-second, simulated
    seconds per CPU-second (None when no timer is armed anywhere: the host has nothing
    to run until input, so simulated time costs nothing), and per simulated second what
    the machine did (instructions, events by kind)."""
    from soak import CHUNK, boot
    host, _xl = boot(guests)
    host.run(CHUNK)
    i0, c0, n0 = host.instructions, max(host.clock), dict(host.trace.counts)
    start = time.process_time()
    while time.process_time() - start < seconds:
        if not host.run(CHUNK):
            return 0.0, None, {}
    spent = time.process_time() - start
    simulated = (max(host.clock) - c0) / host.cpu_hz
    per_sim = {"instructions": (host.instructions - i0) / simulated}
    for kind, n in sorted(host.trace.counts.items()):
        if n > n0.get(kind, 0):
            per_sim[kind] = (n - n0.get(kind, 0)) / simulated
    return (host.instructions - i0) / spent, simulated / spent, per_sim


def busy_rate(idle: list[str], seconds: float, warm_up: int) -> float:
    """Instructions per CPU-second of a PV guest running the workload, beside ``idle``
    guests sitting at their prompts (or alone)."""
    from soak import boot
    host, xl = boot(idle)
    spec = C.MODES["pv"]
    conf = DomainConfig(name="busy-pv", type=spec["type"], memory=32, maxmem=32,
                        kernel=str(KERNELS / spec["kernel"]), lab_program=str(DEFAULT_PROGRAM),
                        cmdline=f"rounds={ROUNDS}", filename="<speed busy>")
    dom = xl.create(conf)
    host.run(warm_up)
    cpu = dom.vcpus[0].cpu
    i0 = cpu.icount
    start = time.process_time()
    while time.process_time() - start < seconds:
        host.run(200_000)
    return (cpu.icount - i0) / (time.process_time() - start)


#: py65's rate on this machine when the compare targets (3.0 s cold, 2.0 s warm) were set.
TARGET_PY65 = 2.1e6


def compare_cpu(cache: str | None) -> float:
    """CPU seconds of ``xenlab compare`` in a fresh process (``cache``: its cache directory)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if cache is not None:
        env["XENLAB_CACHE"] = cache
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "lab.cli", "compare", "--modes", ",".join(COMPARED)], cwd=ROOT,
                   env=env, stdout=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="CPU seconds per steady-state figure")
    ap.add_argument("--warm-up", type=int, default=400_000)
    ap.add_argument("--modes", default=",".join(COMPARED))
    ap.add_argument("--no-compare", action="store_true", help="skip timing xenlab compare")
    ap.add_argument("--compare-runs", type=int, default=3, help="cold and warm compare pairs (the median is shown)")
    ap.add_argument("--idle-only", action="store_true", help="only the idle guests and the busy guest beside them")
    ap.add_argument("--repeat", type=int, default=3, help="alternating runs of the busy guest, alone and beside idle ones")
    args = ap.parse_args()

    print(f"Python {sys.version.split()[0]} ({sys.implementation.name}), load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    ref = py65_rate(args.seconds)
    print(f"{'py65 (6502)':<24} {ref / 1e6:6.2f} M/s")
    if not args.idle_only:
        # Each run between two py65 figures; the median of the runs' ratios.
        runs = []
        for _ in range(args.repeat):
            rate, r = bench_rate()
            ref2 = py65_rate(args.seconds)
            runs.append((rate / ((ref + ref2) / 2), rate))
            ref = ref2
        ratio, rate = sorted(runs)[len(runs) // 2]
        print(f"{'xenlab bench':<24} {rate / 1e6:6.2f} M/s  {ratio:4.1f}x py65   ({r['instructions']:,} "
              f"instructions, {r['translations']} blocks; median of {len(runs)} processes: "
              + ", ".join(f"{x:.1f}x" for x, _ in runs) + ")")
    for mode in [] if args.idle_only else args.modes.split(","):
        rate = steady_rate(mode, args.seconds, args.warm_up)
        ref = py65_rate(args.seconds / 2)
        print(f"{'steady ' + mode:<24} {rate / 1e6:6.2f} M/s  {rate / ref:4.1f}x py65 ({ref / 1e6:.2f})")
    # The PV and HVM guests (the HVM kernels take COM1 on its interrupt); the tickless guests
    # whose input is a console ring; PVHVM, whose inputs are hvc0 (an event) and COM1 (its
    # interrupt).
    for guests in (["pv", "hvm", "hvm-pvdrivers"], ["pv", "pv32", "pvh"], ["pvhvm"]):
        rate, sim_rate, per_sim = idle_rates(args.seconds, guests)
        label = f"idle guests ({', '.join(guests)})"
        if sim_rate is None:
            print(f"{label:<24} no timer armed anywhere: the host has nothing to run until input "
                  f"(0 instructions and 0 events per simulated second)")
            continue
        ref = py65_rate(args.seconds / 2)
        print(f"{label:<24} {rate / 1e6:6.2f} M/s  {rate / ref:4.1f}x py65 ({ref / 1e6:.2f}); "
              f"{sim_rate:.1f} simulated seconds per CPU-second")
        print(f"{'':<24} per simulated second: " + ", ".join(f"{n:,.0f} {k}" for k, n in per_sim.items()))
    alone, beside = [], []
    for _ in range(args.repeat):
        alone.append(busy_rate([], args.seconds, args.warm_up))
        beside.append(busy_rate(["pv", "hvm"], args.seconds, args.warm_up))
    a, b = statistics.median(alone), statistics.median(beside)
    print(f"{'busy pv alone':<24} {a / 1e6:6.2f} M/s (median of {args.repeat})")
    print(f"{'busy pv beside idle':<24} {b / 1e6:6.2f} M/s beside an idle PV and HVM guest: "
          f"the idle ones cost it {100 * (1 - b / a):+.1f}%")
    if not args.no_compare and not args.idle_only:
        compare_cpu(None)            # the lab's own bytecode written once, as installed
        colds, warms = [], []
        for _ in range(args.compare_runs):
            # py65 on either side of each pair: the machine's speed drifts from minute to minute.
            before = py65_rate(1.0)
            with tempfile.TemporaryDirectory(prefix="xenlab-speed-") as cold:
                cold_s = compare_cpu(cold)
                warm_s = compare_cpu(cold)
            ref = (before + py65_rate(1.0)) / 2
            colds.append((cold_s, cold_s * ref / TARGET_PY65))
            warms.append((warm_s, warm_s * ref / TARGET_PY65))
        c, w = statistics.median(x for x, _ in colds), statistics.median(x for x, _ in warms)
        cs, ws = statistics.median(x for _, x in colds), statistics.median(x for _, x in warms)
        print(f"{'xenlab compare':<24} {c:6.2f} s CPU cold (empty caches), {w:.2f} s warm (median of "
              f"{args.compare_runs}); scaled to py65 at {TARGET_PY65 / 1e6:.1f} M/s, the machine speed "
              f"its targets were set at: {cs:.2f} s cold, {ws:.2f} s warm")


if __name__ == "__main__":
    main()
