"""Tickless HVM kernels: hvm.s and hvm_pvdrivers.s time with the PM timer and the local APIC
timer in one-shot mode, never start the PIT, and take COM1 and the NE2000 on their interrupts,
which QEMU raises and lowers with dm_op. Idle at the prompt they arm nothing and the host stops."""

from __future__ import annotations

import pytest

from test_guest_net import HVM_MAC, command, net_host, shell_guest, wait_prompt
from xen_helpers import peek

pytestmark = pytest.mark.machine       # every test here boots a whole machine

COM1_VECTOR, NE2K_VECTOR, LAPIC_TIMER_VECTOR = 0x24, 0x25, 0xEC


def kernel_ticks(host, dom) -> int:
    return int.from_bytes(peek(host, dom, dom.images["kernel"].symbols["ticks"], 8), "little")


def dm_ops(host, dom, since: int) -> list[list]:
    """The device model's dm_op calls for ``dom`` since trace position ``since``: their arguments."""
    return [e.data["args"][1:] for e in host.trace.iter_all()
            if e.seq >= since and e.kind == "hypercall" and e.data["name"] == "dm_op"
            and e.data["args"][0] == f"d{dom.domid}"]


def interrupts(host, dom, since: int, source: str = "") -> list[int]:
    """The vectors raised for ``dom`` since ``since`` by a source whose text has ``source``."""
    return [e.data["vector"] for e in host.trace.iter_all()
            if e.seq >= since and e.kind == "interrupt" and e.dom == dom.domid
            and source in str(e.data.get("source", ""))]


def idle_guest(tmp_path, mode: str, **kw):
    host, xl = net_host()
    dom = shell_guest(xl, tmp_path, "h1", mode, **kw)
    wait_prompt(host, dom)
    host.run(200_000)                   # let the boot's last events settle
    return host, dom


@pytest.mark.parametrize("mode", ["hvm", "hvm-pvdrivers"])
def test_an_idle_hvm_guest_arms_no_timer_and_a_key_wakes_it_with_an_interrupt(tmp_path, mode):
    host, dom = idle_guest(tmp_path, mode)
    v = dom.vcpus[0]
    # no PIT, no local APIC deadline: every vCPU sleeps and the host has nothing to run
    assert dom.pit_timer is None and v.vlapic_timer is None
    assert v.blocked
    icount, seq = host.instructions, host.trace.seq
    assert host.run(1_000_000) is False
    assert host.instructions == icount and host.trace.seq == seq
    assert host.next_deadline() is None
    # A key: QEMU raises COM1's IRQ 4 with dm_op, the guest takes vector 0x24, reads the byte
    # (the line falls again) and echoes it.
    out = command(host, dom, "stats")
    assert out.startswith("syscalls ") and "timer ticks 0," in out
    ops = dm_ops(host, dom, seq)
    assert ["XEN_DMOP_set_isa_irq_level", 4, 1] in ops and ["XEN_DMOP_set_isa_irq_level", 4, 0] in ops
    assert ops.count(["XEN_DMOP_set_isa_irq_level", 4, 1]) == ops.count(["XEN_DMOP_set_isa_irq_level", 4, 0])
    assert COM1_VECTOR in interrupts(host, dom, seq, "XEN_DMOP_set_isa_irq_level: ISA IRQ 4")
    # and it sleeps again with nothing armed
    host.run(200_000)
    assert v.blocked and v.vlapic_timer is None and host.run(100_000) is False


def test_the_pit_is_never_started_and_the_workload_takes_no_tick(tmp_path):
    host, dom = idle_guest(tmp_path, "hvm")
    pit = dom.devices["vpit"]
    assert not pit.running
    ports = {e.data["port"] for e in host.trace.iter_all()
             if e.kind == "ioport" and e.dom == dom.domid and e.data["dir"] == "out"}
    assert not ports & {0x40, 0x41, 0x42, 0x43}
    assert kernel_ticks(host, dom) == 0


def test_the_ne2000_interrupt_ends_the_wait_for_a_reply(tmp_path):
    host, dom = idle_guest(tmp_path, "hvm", mac=HVM_MAC)
    # the driver's one PCI scan kept the card's slot, whose interrupt line the kernel then read
    slot = peek(host, dom, dom.images["kernel"].symbols["ne2k_slot"], 4)
    assert int.from_bytes(slot, "little") == 4
    seq, start = host.trace.seq, max(host.clock)
    assert command(host, dom, "ping 0") == "ping 10.0.0.1: echo reply from 00:16:3e:00:00:01 seq 1\n"
    # The answers came as INTA of slot 4 (link 0, ISA IRQ 5): vector 0x25, not a timeout
    ops = dm_ops(host, dom, seq)
    assert ["XEN_DMOP_set_pci_intx_level", 0, 0, 4, 0, 1] in ops
    assert ["XEN_DMOP_set_pci_intx_level", 0, 0, 4, 0, 0] in ops
    assert NE2K_VECTOR in interrupts(host, dom, seq, "XEN_DMOP_set_pci_intx_level: 00:04.0 INTA, link 0: ISA IRQ 5")
    assert max(host.clock) - start < host.cpu_hz // 10            # well under the 1 s timeout
    assert kernel_ticks(host, dom) == 0                           # the deadline never fired
    assert dom.vcpus[0].vlapic_timer is None                      # nor is it left armed


def test_a_ping_nobody_answers_waits_on_one_lapic_deadline_per_try(tmp_path):
    host, dom = idle_guest(tmp_path, "hvm", mac=HVM_MAC)
    seq, start = host.trace.seq, max(host.clock)
    out = command(host, dom, "ping 7", budget=40_000_000)
    assert out == "ping 10.0.0.17: no reply, errno 110\n"
    # three ARP requests, each waited for 1 s on one one-shot local APIC timer that fired once:
    # the clock (the PM timer) advanced right
    assert kernel_ticks(host, dom) == 3
    assert interrupts(host, dom, seq, "vLAPIC timer") == [LAPIC_TIMER_VECTOR] * 3
    elapsed = max(host.clock) - start
    assert 3 * host.cpu_hz <= elapsed < 3 * host.cpu_hz + host.cpu_hz // 10
    assert dom.vcpus[0].vlapic_timer is None
    assert "timer ticks 3," in command(host, dom, "stats")


def test_the_shadow_paging_guest_is_tickless_too(tmp_path):
    host, dom = idle_guest(tmp_path, "hvm", hap=0)
    assert host.run(100_000) is False
    assert command(host, dom, "stats").startswith("syscalls ")


def test_a_burst_of_typing_is_one_rise_and_one_fall_of_irq_4(tmp_path):
    # Input waits in QEMU's queue and refills the receive buffer as the guest reads it, so
    # the line stays up until the last byte is read: a flood of keys costs two dm_ops.
    host, dom = idle_guest(tmp_path, "hvm")
    seq = host.trace.seq
    start = len(dom.console_output)
    host.services.device_model.console_input(dom, "x" * 300 + "\n")
    wait_prompt(host, dom, start + 200, budget=20_000_000)
    assert dm_ops(host, dom, seq) == [["XEN_DMOP_set_isa_irq_level", 4, 1], ["XEN_DMOP_set_isa_irq_level", 4, 0]]
    assert interrupts(host, dom, seq, "XEN_DMOP_set_isa_irq_level") == [COM1_VECTOR]
    host.run(200_000)
    assert dom.vcpus[0].blocked and host.run(100_000) is False
