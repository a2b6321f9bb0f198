"""Xen's guest ABI: every number and name the lab shows, spelled as Xen spells it.

One module per Xen header (paths relative to the xen-project/xen repository),
every name written out so that grep, editors and type checkers find it.
Learners are meant to hold these modules against the real headers: a value
here that is not in Xen is a bug. Where the lab adds a name of its own (an
alias, a convenience), the comment says so. The x86 architecture's own
numbers (exception vectors, MSRs, control-register and page-table bits) are
not Xen's: they live in ``lab.hw.x86``.

Nothing here does anything; the hypervisor, the toolstack and the panes import
these tables so that they all agree. ``abi.NAME`` reaches every public name of
every module below.
"""

from __future__ import annotations

from lab.xen.abi.arch_x86_64 import *  # noqa: F403
from lab.xen.abi.callback import *  # noqa: F403
from lab.xen.abi.cpuid import *  # noqa: F403
from lab.xen.abi.domctl import *  # noqa: F403
from lab.xen.abi.elfnote import *  # noqa: F403
from lab.xen.abi.errno import *  # noqa: F403
from lab.xen.abi.event_channel import *  # noqa: F403
from lab.xen.abi.grant_table import *  # noqa: F403
from lab.xen.abi.hvm import *  # noqa: F403
from lab.xen.abi.hypercalls import *  # noqa: F403
from lab.xen.abi.io_ring import *  # noqa: F403
from lab.xen.abi.memory import *  # noqa: F403
from lab.xen.abi.page_types import *  # noqa: F403
from lab.xen.abi.physdev import *  # noqa: F403
from lab.xen.abi.sched import *  # noqa: F403
from lab.xen.abi.trace import *  # noqa: F403
from lab.xen.abi.vcpu import *  # noqa: F403
from lab.xen.abi.version import *  # noqa: F403
from lab.xen.abi.vmexit import *  # noqa: F403
from lab.xen.abi.xen import *  # noqa: F403
from lab.xen.abi.xs_wire import *  # noqa: F403
