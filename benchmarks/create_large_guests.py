"""How long ``xl create`` takes for guests of real sizes.

Boots Xen with Domain-0 on a host of ``--host-mib`` MiB (allocated sparsely, as the
lab's machine memory always is) and creates, one after the other, a PV and an HVM
guest of ``--guest-mib`` MiB with the lab's stock kernels, timing each ``xl create``
(domain building: the frames, the M2P, the PV initial page tables or the HVM guest's
EPT). Prints the figures and the process's peak memory; a measurement, not a test.

Usage::

    python benchmarks/create_large_guests.py [--host-mib 9216] [--guest-mib 4096]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.paths import KERNELS  # noqa: E402
from lab.session.scenario import boot_host  # noqa: E402
from lab.xen.host import HostConfig  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host-mib", type=int, default=9216)
    ap.add_argument("--guest-mib", type=int, default=4096)
    args = ap.parse_args()
    t0 = time.perf_counter()
    host, xl = boot_host(HostConfig(mem_mib=args.host_mib))
    print(f"boot (Xen and Domain-0, {args.host_mib} MiB host): {time.perf_counter() - t0:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        for gtype, kernel in (("pv", "pv.s"), ("hvm", "hvm.s")):
            cfg = Path(tmp) / f"{gtype}.cfg"
            cfg.write_text(f'name = "big-{gtype}"\ntype = "{gtype}"\nmemory = {args.guest_mib}\n'
                           f'kernel = "{KERNELS / kernel}"\n')
            t0 = time.perf_counter()
            dom = xl.create(cfg)
            took = time.perf_counter() - t0
            print(f"xl create {gtype} {args.guest_mib} MiB: {took:.2f} s ({dom.mem_pages} pages)")
    print(f"peak memory of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
