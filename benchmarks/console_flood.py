"""What a guest printing without end costs the host: CPU per byte and memory held, per 100 KB.

Writes ``--megabytes`` of text with no newline into one HVM domain's console the way a guest's
``out 0xE9`` delivers it (a byte at a time through Xen's debug-port handler), and prints for
each 100 KB the CPU time it took (not wall time: the machine may be shared), the characters the
domain holds (its console log and its line not yet ended) and the process's peak memory. A
bounded, O(1) console costs the same for every 100 KB and holds at most its bound; a string
grown by ``+=`` costs more each time. A measurement, not a test.

Usage::

    python benchmarks/console_flood.py [--megabytes 2]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab.session.scenario import boot_host  # noqa: E402
from lab.xen.vdev.debugcon import DebugConsolePort  # noqa: E402

CHUNK = 100_000
KERNEL = ROOT / "tests" / "attacks" / "guests" / "hvm_debugcon_flood.s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--megabytes", type=float, default=2.0)
    args = ap.parse_args()
    host, xl = boot_host()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "flood.cfg"
        cfg.write_text(f'name = "flood"\ntype = "hvm"\nmemory = 16\nkernel = "{KERNEL}"\n')
        dom = xl.create(cfg, paused=True)
    port, v = DebugConsolePort(), dom.vcpus[0]
    letters = bytes(range(0x41, 0x5B))
    print(f"{'written':>10} {'CPU s':>7} {'us/byte':>8} {'held chars':>11} {'peak RSS MiB':>13}")
    written = 0
    for _ in range(int(args.megabytes * 1_000_000 // CHUNK)):
        start = time.process_time()
        for i in range(CHUNK):
            port.port_write(host, v, 0xE9, 1, letters[i % 26])
        cpu = time.process_time() - start
        written += CHUNK
        held = len(dom.console_output) + len(dom.extra.get("console_partial", ""))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{written:>10} {cpu:>7.3f} {cpu / CHUNK * 1e6:>8.2f} {held:>11} {peak:>13.1f}", flush=True)


if __name__ == "__main__":
    main()
