"""vcpu_op and run states: public/vcpu.h.
"""

from __future__ import annotations

from lab.xen.abi._names import collect

VCPUOP_initialise = 0
VCPUOP_up = 1
VCPUOP_down = 2
VCPUOP_is_up = 3
VCPUOP_get_runstate_info = 4
VCPUOP_register_runstate_memory_area = 5
VCPUOP_set_periodic_timer = 6
VCPUOP_stop_periodic_timer = 7
VCPUOP_set_singleshot_timer = 8
VCPUOP_stop_singleshot_timer = 9
VCPUOP_register_vcpu_info = 10
VCPUOP_send_nmi = 11
VCPUOP_get_physid = 12
VCPUOP_register_vcpu_time_memory_area = 13
VCPUOP_register_runstate_phys_area = 14
VCPUOP_register_vcpu_time_phys_area = 15
VCPUOP_NAMES: dict[int, str] = collect(globals(), "VCPUOP_")
#: struct vcpu_set_singleshot_timer flags: "the timeout must be in the future"; Xen 4.18 and later ignore it.
VCPU_SSHOTTMR_future = 1

RUNSTATE_running = 0
RUNSTATE_runnable = 1
RUNSTATE_blocked = 2
RUNSTATE_offline = 3
RUNSTATE_NAMES = {0: "running", 1: "runnable", 2: "blocked", 3: "offline"}
