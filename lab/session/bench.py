"""``xenlab bench``: guest instructions per second on the native kernel with paging on."""

from __future__ import annotations

import time

from .build import native_machine


def run_bench(rounds: int = 12) -> dict:
    machine = native_machine(arg=rounds)
    start = time.perf_counter()   # wall time of the benchmark only; the simulation never reads it
    machine.run()
    seconds = time.perf_counter() - start
    n = machine.cpu.icount
    checksum = next((ln for ln in machine.console.output.splitlines() if "checksum" in ln), "")
    return {"instructions": n, "seconds": round(seconds, 4),
            "instructions_per_second": round(n / seconds) if seconds else 0,
            "translations": machine.code.translations, "stopped": machine.cpu.stopped,
            "checksum": checksum.strip()}
