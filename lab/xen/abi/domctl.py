"""Domain control: public/domctl.h.
"""

from __future__ import annotations

#: XEN_DOMCTL_INTERFACE_VERSION of Xen master (public/domctl.h); do_domctl() refuses any other
#: with -EACCES.
XEN_DOMCTL_INTERFACE_VERSION = 0x18
# getdomaininfo's flags (public/domctl.h)
XEN_DOMINF_dying = 1 << 0
XEN_DOMINF_hvm_guest = 1 << 1
XEN_DOMINF_shutdown = 1 << 2
XEN_DOMINF_paused = 1 << 3
XEN_DOMINF_blocked = 1 << 4
XEN_DOMINF_running = 1 << 5
XEN_DOMINF_debugged = 1 << 6
XEN_DOMINF_xs_domain = 1 << 7
XEN_DOMINF_hap = 1 << 8
XEN_DOMINF_shutdownmask = 255
XEN_DOMINF_shutdownshift = 16
