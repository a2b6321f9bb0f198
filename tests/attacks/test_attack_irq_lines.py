"""A hostile HVM guest against the interrupt lines the device model drives with dm_op.

The guest (guests/hvm_irq_line_hammer.s) toggles COM1's IER and the NE2000's IMR 500
times each while an interrupt source is pending, and overwrites the card's interrupt
line register. Every toggle is one line change QEMU passes to Xen (one dm_op, paid for
by the guest's own I/O exit), the pending request on the emulated PIC stays one bit,
the card's INTx is routed by its slot and pin whatever the register says, nothing raises
out of the simulator, and a PV victim beside it is not touched.
"""

from __future__ import annotations

import pytest

from attack_support import GUESTS, SCRIPT_GUESTS
from xen_helpers import frames_digest, frames_of, small_host, write_cfg

pytestmark = pytest.mark.machine

ROUNDS = 500


@pytest.fixture(scope="module")
def hammered(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("irq_lines")
    host, xl = small_host()
    victim = xl.create(write_cfg(tmp_path, "victim", "pv", SCRIPT_GUESTS / "pv_script.s", memory=16), paused=True)
    dom = xl.create(write_cfg(tmp_path, "hammer", "hvm", GUESTS / "hvm_irq_line_hammer.s", memory=16, hap=1,
                              vif=["model=ne2k_pci, type=ioemu, mac=00:16:3e:00:00:41"]))
    before = frames_digest(host, frames_of(victim))
    seq = host.trace.seq
    host.run(3_000_000)
    ops = [e.data["args"][1:] for e in host.trace.iter_all()
           if e.seq >= seq and e.kind == "hypercall" and e.data["name"] == "dm_op"
           and e.data["args"][0] == f"d{dom.domid}"]
    return host, dom, victim, before, ops


def test_the_guest_ran_to_its_end(hammered):
    host, dom, victim, before, ops = hammered
    assert dom.state == "shutdown" and dom.shutdown_reason == "poweroff"
    assert host.domains[0].alive and victim.alive and frames_digest(host, frames_of(victim)) == before


def test_each_toggle_is_one_dm_op_and_no_more(hammered):
    host, dom, victim, before, ops = hammered
    uart = [op for op in ops if op[0] == "XEN_DMOP_set_isa_irq_level"]
    nic = [op for op in ops if op[0] == "XEN_DMOP_set_pci_intx_level"]
    assert uart == [["XEN_DMOP_set_isa_irq_level", 4, 1], ["XEN_DMOP_set_isa_irq_level", 4, 0]] * ROUNDS
    # INTA of slot 4, whatever the guest wrote into the interrupt line register; the last
    # rise is IMR all ones with RDC still set, the last fall the acknowledgement of every bit
    assert nic == [["XEN_DMOP_set_pci_intx_level", 0, 0, 4, 0, 1],
                   ["XEN_DMOP_set_pci_intx_level", 0, 0, 4, 0, 0]] * (ROUNDS + 1)


def test_the_lines_end_down_and_the_pic_holds_no_stale_request(hammered):
    host, dom, victim, before, ops = hammered
    irq = dom.devices["hvm_irq"]
    assert irq.isa_irq == 0 and irq.pci_intx == 0
    assert not any(irq.gsi_assert_count) and not any(irq.pci_link_assert_count)
    pic = dom.devices["vpic"]
    assert not pic.irr & ((1 << 4) | (1 << 5))       # each fall withdrew the request
    interrupts = [e for e in host.trace.iter_all() if e.kind == "interrupt" and e.dom == dom.domid]
    assert len(interrupts) == 2 * ROUNDS + 1          # one per rise, none taken (interrupts off)


def test_bad_lines_are_refused_as_dm_c_refuses_them(hammered):
    from lab.xen.vdev import irq
    host, dom, victim, before, ops = hammered
    assert irq.set_isa_irq_level(host, dom, 16, 1) is not None
    assert irq.set_isa_irq_level(host, dom, 4, 2) is not None
    assert irq.set_pci_intx_level(host, dom, 0, 0, 32, 0, 1) is not None
    assert irq.set_pci_intx_level(host, dom, 0, 1, 4, 0, 1) is not None
    assert irq.set_pci_intx_level(host, dom, 0, 0, 4, 4, 1) is not None
    assert dom.devices["hvm_irq"].pci_intx == 0 and dom.devices["hvm_irq"].isa_irq == 0
    # a deassert of a line nobody asserted changes nothing
    irq.pci_intx_deassert(host, dom, 4, 0)
    irq.isa_irq_deassert(host, dom, 4)
    assert not any(dom.devices["hvm_irq"].gsi_assert_count)
