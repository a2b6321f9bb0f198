"""SCHEDOP_shutdown, SCHEDOP_shutdown_code and SCHEDOP_remote_shutdown: do_sched_op()'s
common part (xen/common/sched/core.c), the same on every architecture.

Each architecture's sched_op handler (``lab/xen/hypercalls.py``, ``lab/xen/arm/hypercalls.py``)
keeps what is its own, yielding and blocking (x86 unmasks its PV event delivery first, Arm
looks at its vGIC and generic timer), and how its trace shows the call, and hands the rest here.
"""

from __future__ import annotations

from . import abi

E = abi.ERRNO


def common_sched_op(host, v, cmd: int, arg: int, info: dict) -> int | None:
    """The result of a common sub-op, or None when ``cmd`` is not one (the architecture's own)."""
    if cmd in (abi.SCHEDOP_shutdown, abi.SCHEDOP_shutdown_code):
        # do_sched_op() passes the reason on as a u8 and refuses none: a code Xen does not
        # name is still the domain's shutdown code.
        reason = int.from_bytes(host.hypercalls.copy_from_guest(host, v, arg, 4), "little") & 0xFF
        name = abi.SHUTDOWN_NAMES.get(reason, f"code {reason}")
        info["args"] = [abi.SCHEDOP_NAMES[cmd], name]
        if cmd == abi.SCHEDOP_shutdown_code:
            v.domain.extra.setdefault("shutdown_code", reason)      # the first one set stays
        elif name == "crash" and host.shutdown_crash_crashes:
            host.crash(v.domain, "the guest reported a crash (SCHEDOP_shutdown)", v)
        else:
            host.shutdown(v.domain, name)
        return 0
    if cmd == abi.SCHEDOP_remote_shutdown:
        if not v.domain.privileged:
            # xsm_schedop_shutdown(XSM_DM_PRIV) refuses a domU
            info["why"] = "another domain's shutdown: the control domain's (XSM default policy)"
            return -E["EPERM"]
        return -E["ENOSYS"]
    return None
