"""Event channels: xen/include/public/event_channel.h; VIRQs from public/xen.h.
"""

from __future__ import annotations

from lab.xen.abi._layout import Layout
from lab.xen.abi._names import collect

EVTCHNOP_bind_interdomain = 0
EVTCHNOP_bind_virq = 1
EVTCHNOP_bind_pirq = 2
EVTCHNOP_close = 3
EVTCHNOP_send = 4
EVTCHNOP_status = 5
EVTCHNOP_alloc_unbound = 6
EVTCHNOP_bind_ipi = 7
EVTCHNOP_bind_vcpu = 8
EVTCHNOP_unmask = 9
EVTCHNOP_reset = 10
EVTCHNOP_init_control = 11
EVTCHNOP_expand_array = 12
EVTCHNOP_set_priority = 13
EVTCHNOP_reset_cont = 14
EVTCHNOP_NAMES: dict[int, str] = collect(globals(), "EVTCHNOP_", strip=True)

#: The argument structure of each sub-op the lab implements (domid_t is u16, evtchn_port_t u32).
EVTCHNOP_LAYOUTS: dict[int, Layout] = {
    EVTCHNOP_bind_interdomain: Layout("evtchn_bind_interdomain", 12,
                                      {"remote_dom": (0, 2), "remote_port": (4, 4), "local_port": (8, 4)}),
    EVTCHNOP_bind_virq: Layout("evtchn_bind_virq", 12, {"virq": (0, 4), "vcpu": (4, 4), "port": (8, 4)}),
    EVTCHNOP_close: Layout("evtchn_close", 4, {"port": (0, 4)}),
    EVTCHNOP_send: Layout("evtchn_send", 4, {"port": (0, 4)}),
    # u: the union of unbound {dom}, interdomain {dom, port}, pirq and virq (8 bytes)
    EVTCHNOP_status: Layout("evtchn_status", 24,
                            {"dom": (0, 2), "port": (4, 4), "status": (8, 4), "vcpu": (12, 4), "u": (16, 8)}),
    EVTCHNOP_alloc_unbound: Layout("evtchn_alloc_unbound", 8, {"dom": (0, 2), "remote_dom": (2, 2), "port": (4, 4)}),
    EVTCHNOP_bind_ipi: Layout("evtchn_bind_ipi", 8, {"vcpu": (0, 4), "port": (4, 4)}),
    EVTCHNOP_unmask: Layout("evtchn_unmask", 4, {"port": (0, 4)}),
    EVTCHNOP_reset: Layout("evtchn_reset", 2, {"dom": (0, 2)}),
    EVTCHNOP_reset_cont: Layout("evtchn_reset", 2, {"dom": (0, 2)}),
}

EVTCHNSTAT_closed = 0
EVTCHNSTAT_unbound = 1
EVTCHNSTAT_interdomain = 2
EVTCHNSTAT_pirq = 3
EVTCHNSTAT_virq = 4
EVTCHNSTAT_ipi = 5
EVTCHNSTAT_NAMES = {0: "closed", 1: "unbound", 2: "interdomain", 3: "pirq", 4: "virq", 5: "ipi"}

#: 2-level ABI: sizeof(xen_ulong_t)^2 * 64 ports (EVTCHN_2L_NR_CHANNELS).
EVTCHN_2L_NR_CHANNELS_64 = 4096
EVTCHN_2L_NR_CHANNELS_32 = 1024
EVTCHN_FIFO_NR_CHANNELS = 1 << 17
EVTCHN_FIFO_PRIORITY_MAX = 0
EVTCHN_FIFO_PRIORITY_DEFAULT = 7
EVTCHN_FIFO_PRIORITY_MIN = 15

# VIRQs, with the class from xen.h's comments: V per-vCPU, D per-domain, G global.
VIRQ_TIMER = 0
VIRQ_DEBUG = 1
VIRQ_CONSOLE = 2
VIRQ_DOM_EXC = 3
VIRQ_TBUF = 4
VIRQ_DEBUGGER = 6
VIRQ_XENOPROF = 7
VIRQ_CON_RING = 8
VIRQ_PCPU_STATE = 9
VIRQ_MEM_EVENT = 10
VIRQ_ARGO = 11
VIRQ_ENOMEM = 12
VIRQ_XENPMU = 13
VIRQ_ARCH_0 = 16
VIRQ_ARCH_1 = 17
VIRQ_ARCH_2 = 18
VIRQ_ARCH_3 = 19
VIRQ_ARCH_4 = 20
VIRQ_ARCH_5 = 21
VIRQ_ARCH_6 = 22
VIRQ_ARCH_7 = 23
VIRQ_MCA = VIRQ_ARCH_0          # public/arch-x86/xen-mca.h
NR_VIRQS = 24

VIRQ_CLASS: dict[int, str] = {
    VIRQ_TIMER: "V", VIRQ_DEBUG: "V", VIRQ_CONSOLE: "G", VIRQ_DOM_EXC: "G", VIRQ_TBUF: "G",
    VIRQ_DEBUGGER: "G", VIRQ_XENOPROF: "V", VIRQ_CON_RING: "G", VIRQ_PCPU_STATE: "G",
    VIRQ_MEM_EVENT: "G", VIRQ_ARGO: "D", VIRQ_ENOMEM: "G", VIRQ_XENPMU: "V",
    # The arch VIRQs carry no class in xen.h; x86's one user, VIRQ_MCA, is
    # global (xen-mca.h: "G. (DOM0) Machine Check Architecture").
    VIRQ_ARCH_0: "G",
}
VIRQ_NAMES: dict[int, str] = {
    0: "VIRQ_TIMER", 1: "VIRQ_DEBUG", 2: "VIRQ_CONSOLE", 3: "VIRQ_DOM_EXC", 4: "VIRQ_TBUF",
    6: "VIRQ_DEBUGGER", 7: "VIRQ_XENOPROF", 8: "VIRQ_CON_RING", 9: "VIRQ_PCPU_STATE",
    10: "VIRQ_MEM_EVENT", 11: "VIRQ_ARGO", 12: "VIRQ_ENOMEM", 13: "VIRQ_XENPMU",
    **{16 + i: f"VIRQ_ARCH_{i}" for i in range(8)},
}


def virq_is_per_vcpu(virq: int) -> bool:
    return VIRQ_CLASS.get(virq) == "V"
