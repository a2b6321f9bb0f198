"""xenconsoled and xenstored for Arm guests: the same daemons as on x86.

The rings live in the guest's "magic" pages (GUEST_MAGIC_BASE, see
``lab/xen/arm/layout.py``); the guest finds them with HVMOP_get_param
(HVM_PARAM_CONSOLE_PFN/EVTCHN, HVM_PARAM_STORE_PFN/EVTCHN), as Linux's
``xen_guest_init()`` does on Arm. The daemons map them as dom0 maps a foreign
page (``lab/xen/arm/frames.py``) and run as dom0 work when the guest's event
channel fires. What is Arm's own: a guest is translated, so its rings are
named by gfn and found behind its stage 2, and the ports it is given go in its
HVM params, where an Arm guest looks for them.
"""

from __future__ import annotations

from ...xen import abi
from ..xenconsoled import ConsoleDaemon
from ..xenstored import Xenstored


class ArmConsoleBackend(ConsoleDaemon):
    """xenconsoled: drains out[] of a guest's console ring, and puts what is typed into in[]."""

    def connect(self, dom) -> int:
        port = super().connect(dom)
        dom.console_evtchn = port
        dom.hvm_params[abi.HVM_PARAM_CONSOLE_EVTCHN] = port       # HVMOP_get_param's answer
        return port


class ArmXenstored(Xenstored):
    """xenstored for Arm guests: the same daemon as on x86 (requests, transactions, watches,
    dom0's tools and backends); only where a guest's frames are differs. An Arm guest is
    translated, so INTRODUCE names its ring by gfn, and its frames are behind its stage 2."""

    def connect(self, dom, pfn: int | None = None) -> tuple[int, int]:
        pfn_port = super().connect(dom, pfn)
        dom.hvm_params[abi.HVM_PARAM_STORE_EVTCHN] = dom.store_evtchn   # HVMOP_get_param's answer
        return pfn_port

    def _guest_mfn(self, dom, gfn: int) -> int | None:
        p2m = self.host.p2m(dom)
        return p2m.lookup(gfn) if p2m is not None and 0 <= gfn < (1 << 36) else None

    def _owns(self, dom, mfn: int) -> bool:
        return mfn in dom.extra.get("frames", ())
