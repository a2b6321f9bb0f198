"""dm_op from hostile guests (xen/common/dm.c, xen/arch/x86/hvm/dm.c).

Only a domain's device model may route its PCI interrupt links (XEN_DMOP_set_pci_link_route):
a guest's dm_op on another domain is XSM_DM_PRIV's -EPERM, on itself -EPERM, on a domain
that does not exist -ESRCH, on a PV domain -EINVAL; a missing or oversized buffer list is
-ENODATA / -E2BIG and a buffer list it cannot read -EFAULT. Whatever it passes, nothing
raises out of the simulator, no route changes and nobody else is touched.
"""

from __future__ import annotations

import random
import struct

import pytest

from attack_support import Arena
from lab.xen import abi

pytestmark = pytest.mark.machine

#: Xen's answers to a dm_op that is not the caller's to make, or that it cannot read.
REFUSALS = {-abi.ERRNO[n] for n in ("EPERM", "ESRCH", "EINVAL", "EFAULT", "ENODATA", "E2BIG")}


def test_hostile_dm_ops_route_nothing_and_harm_nobody(tmp_path):
    arena = Arena(tmp_path)
    host = arena.host
    target = arena.hvm.dom                      # an HVM domain with links to route
    routes = {d.domid: list(d.devices["hvm_irq"].pci_link_route) for d in host.domains.values()
              if "hvm_irq" in d.devices}
    rng = random.Random(20261207)
    domids = [0, arena.pv.dom.domid, arena.hvm.dom.domid, arena.victim.dom.domid, 0x7FF0, 0x7FF2, 0xFFFF, 999]
    pointers = [0, 1, 0xFFFF_8000_0000_0000, 0xFFFF_FFFF_FFFF_FFF0, (1 << 64) - 1]
    for attacker in (arena.pv, arena.hvm):
        bufs, h = attacker.buf(0), attacker.buf(256)
        for _ in range(120):
            # a buffer list that points at a hostile struct xen_dm_op, or at nothing at all
            op = rng.choice([10, 10, 10, 0, 9, 11, 17, 255, 0xFFFF_FFFF])
            body = struct.pack("<II", op, rng.choice([0, 0, 1, 0xFFFF_FFFF])) + bytes(rng.randrange(256) for _ in range(8))
            attacker.write(h, body)
            attacker.write(bufs, struct.pack("<QQ", rng.choice([h, h, *pointers]),
                                             rng.choice([0, 4, 8, 9, 10, 16, 1 << 40, (1 << 64) - 1])))
            nr_bufs = rng.choice([1, 1, 1, 0, 2, 3, 0xFFFF_FFFF])
            rc = arena.call(attacker, "dm_op", rng.choice(domids), nr_bufs, rng.choice([bufs, bufs, *pointers]))
            assert rc in REFUSALS, rc
    assert routes == {d.domid: list(d.devices["hvm_irq"].pci_link_route) for d in host.domains.values()
                      if "hvm_irq" in d.devices}
    assert arena.pv.dom.alive and arena.hvm.dom.alive and target.alive
    arena.untouched()
