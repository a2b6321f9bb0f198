"""``xenlab bench``: guest instructions per second on the native kernel with paging on."""

from __future__ import annotations

import time

from .build import native_machine


def run_bench(rounds: int = 12) -> dict:
    machine = native_machine(arg=rounds)
    # Wall and CPU time of the run only (not the machine's building); the simulation never reads them.
    start, cpu_start = time.perf_counter(), time.process_time()
    machine.run()
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    n = machine.cpu.icount
    checksum = next((ln for ln in machine.console.output.splitlines() if "checksum" in ln), "")
    return {"instructions": n, "seconds": round(seconds, 4), "cpu_seconds": round(cpu_seconds, 4),
            "instructions_per_second": round(n / seconds) if seconds else 0,
            "translations": machine.code.translations, "stopped": machine.cpu.stopped,
            "checksum": checksum.strip()}
