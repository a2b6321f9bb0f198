"""Each mode's whole trace, as digests: the same program in every mode of ``xenlab compare``.

Speed work must never change what the machine does. ``test_trace_digests.py`` checks
that each mode's trace (every event, as its JSON line) and checksum are byte for byte
the ones recorded in ``data/trace_digests.json``. When the simulated behaviour changes
on purpose, record the new digests with ``python tests/trace_digests.py --update``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECORDED = HERE / "data" / "trace_digests.json"


def mode_digest(mode: str) -> dict:
    from lab.dom0.xlcfg import DomainConfig
    from lab.paths import KERNELS
    from lab.session import compare as C
    from lab.session.build import DEFAULT_PROGRAM, native_machine
    from lab.session.scenario import DEFAULT_SCENARIO, boot_host, load_scenario

    spec = C.MODES[mode]
    if mode == "native":
        m = native_machine(program=DEFAULT_PROGRAM)
        m.run(C.LIMIT)
        trace, icount = m.trace, m.cpu.icount
    elif mode == "arm":
        from lab.dom0.arm.toolstack import ARM_MACHINES
        sc = load_scenario(ARM_MACHINES / "arm.toml")
        host, xl = boot_host(sc.host, sc.dom0_memory)
        dom = xl.create(ARM_MACHINES / "guest.cfg")
        host.run(C.LIMIT)
        trace, icount = host.trace, dom.vcpus[0].cpu.icount
    else:
        sc = load_scenario(DEFAULT_SCENARIO)
        host, xl = boot_host(sc.host, sc.dom0_memory, sc.dom0_vcpus)
        conf = DomainConfig(name=f"{mode}-guest", type=spec["type"], memory=32, maxmem=32,
                            kernel=str(KERNELS / spec["kernel"]), lab_pv32=spec.get("pv32", False),
                            hap=spec.get("hap", True), lab_program=str(DEFAULT_PROGRAM),
                            on_poweroff="preserve", on_crash="preserve", filename=f"<compare {mode}>")
        conf.disks, conf.vifs = C.guest_devices(mode)
        dom = xl.create(conf)
        host.run(C.LIMIT)
        trace, icount = host.trace, dom.vcpus[0].cpu.icount
    h = hashlib.sha256()
    n = 0
    for ev in trace.iter_all():
        h.update(ev.to_json().encode() + b"\n")
        n += 1
    return {"sha256": h.hexdigest(), "events": n, "instructions": icount}


def all_digests() -> dict:
    from lab.session.compare import DEFAULT_MODES
    return {mode: mode_digest(mode) for mode in DEFAULT_MODES}


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    if sys.argv[1:] == ["--update"]:
        RECORDED.write_text(json.dumps(all_digests(), indent=1, sort_keys=True) + "\n")
        print(f"recorded {RECORDED.name}")
    else:
        print(json.dumps(all_digests(), indent=1, sort_keys=True))
