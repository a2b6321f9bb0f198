"""The focused vCPU and its clocks, in the same words on every architecture's CPU pane."""

from __future__ import annotations

from typing import Any

from ...session.view import StateView

MUTED = "$text-muted"


def focused_info(view: StateView) -> Any:
    return next((v for v in view.vcpus if v.focused), None)


def _micro(cycles: int, hz: int | None) -> str:
    return f" ({cycles / hz * 1e6:,.1f} µs)" if hz else ""


def time_parts(view: StateView, info: Any) -> list[Any]:
    """The focused CPU's instructions and time.

    On bare metal the CPU's cycle count is the machine's time. Under Xen there are
    two clocks: the host's (the furthest pCPU's, Xen's NOW(); the status bar's ``host
    clock``) and each vCPU's (``vcpu clock``: the host's time when it last ran, plus
    what it ran since; it stands still while the vCPU waits and catches up when Xen
    runs it again). ``ran`` is the vCPU's running time, what ``xl vcpu-list`` shows
    as Time(s).
    """
    cpu = view.cpu
    if not view.xen:
        return [("insn ", MUTED), f"{cpu['icount']:,}", ("  cycle ", MUTED), f"{cpu['cycles']:,}",
                (_micro(cpu["cycles"], view.cpu_hz), MUTED)]
    ran = info.run_cycles if info is not None else 0
    parts: list[Any] = [("insn ", MUTED), f"{cpu['icount']:,}", ("  ran ", MUTED), f"{ran:,} cycles",
                        (_micro(ran, view.cpu_hz), MUTED), "\n",
                        ("vcpu clock ", MUTED), f"{cpu['cycles']:,}"]
    if view.host_cycles is not None:
        parts += [("  host clock ", MUTED), f"{view.host_cycles:,}"]
    return parts
