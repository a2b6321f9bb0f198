"""sched_op and shutdown reasons: public/sched.h.
"""

from __future__ import annotations

from lab.xen.abi._names import collect

SCHEDOP_yield = 0
SCHEDOP_block = 1
SCHEDOP_shutdown = 2
SCHEDOP_poll = 3
SCHEDOP_remote_shutdown = 4
SCHEDOP_shutdown_code = 5
SCHEDOP_watchdog = 6
SCHEDOP_pin_override = 7
SCHEDOP_NAMES: dict[int, str] = collect(globals(), "SCHEDOP_")

SHUTDOWN_poweroff = 0
SHUTDOWN_reboot = 1
SHUTDOWN_suspend = 2
SHUTDOWN_crash = 3
SHUTDOWN_watchdog = 4
SHUTDOWN_soft_reset = 5
SHUTDOWN_MAX = 5
SHUTDOWN_NAMES = {0: "poweroff", 1: "reboot", 2: "suspend", 3: "crash", 4: "watchdog",
                  5: "soft_reset"}
