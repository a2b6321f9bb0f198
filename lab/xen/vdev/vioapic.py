"""The IO-APIC Xen emulates for an HVM domain: arch/x86/hvm/vioapic.c.

Two registers at 0xfec00000 (VIOAPIC_DEFAULT_BASE_ADDRESS, 0x100 bytes of
MMIO): IOREGSEL at offset 0x00 picks a register, IOWIN at 0x10 reads or writes
it (``vioapic_read_indirect()`` / ``vioapic_write_indirect()``); any other
offset reads 0 and ignores writes. The registers: the ID (bits 27:24), the
version (VIOAPIC_VERSION_ID 0x11 and the number of pins less one: a domU has
VIOAPIC_NUM_PINS = 48), the arbitration ID, and from 0x10 the 48
redirection entries, two 32-bit halves each, every one masked after reset.
Delivery status and remote IRR are read-only, as ``vioapic_write_redirent()``
keeps them; a selector past the last entry reads 0 and ignores writes.

Not modelled: delivering an interrupt through an unmasked entry (the lab's
interrupt lines reach the vCPU through the emulated PIC). The entries hold
what the guest programmed.
"""

from __future__ import annotations

VIOAPIC_DEFAULT_BASE_ADDRESS = 0xFEC00000
VIOAPIC_MEM_LENGTH = 0x100
VIOAPIC_VERSION_ID = 0x11
VIOAPIC_NUM_PINS = 48
VIOAPIC_REG_SELECT, VIOAPIC_REG_WINDOW = 0x00, 0x10
VIOAPIC_REG_APIC_ID, VIOAPIC_REG_VERSION, VIOAPIC_REG_ARB_ID, VIOAPIC_REG_RTE0 = 0x00, 0x01, 0x02, 0x10
RTE_MASKED = 1 << 16
RTE_DELIVERY_STATUS = 1 << 12
RTE_REMOTE_IRR = 1 << 14


class Vioapic:
    """One domain's IO-APIC and its MMIO handler (vioapic_mmio_ops)."""

    name = "vIOAPIC (in Xen: vioapic.c)"

    def __init__(self, nr_pins: int = VIOAPIC_NUM_PINS, base: int = VIOAPIC_DEFAULT_BASE_ADDRESS) -> None:
        self.base = base
        self.nr_pins = nr_pins
        self.id = 0
        self.ioregsel = 0
        self.redirtbl = [RTE_MASKED] * nr_pins

    def check(self, v, gpa: int) -> bool:
        return self.base <= gpa < self.base + VIOAPIC_MEM_LENGTH

    def _read_indirect(self) -> int:
        sel = self.ioregsel
        if sel == VIOAPIC_REG_VERSION:
            return VIOAPIC_VERSION_ID | ((self.nr_pins - 1) << 16)
        if sel in (VIOAPIC_REG_APIC_ID, VIOAPIC_REG_ARB_ID):
            return (self.id & 0xF) << 24        # union IO_APIC_reg_02: arbitration in bits 27:24
        idx = (sel - VIOAPIC_REG_RTE0) >> 1
        if not 0 <= idx < self.nr_pins:
            return 0                            # "apic_mem_readl:undefined ioregsel"
        entry = self.redirtbl[idx]
        return (entry >> 32) & 0xFFFF_FFFF if sel & 1 else entry & 0xFFFF_FFFF

    def _write_indirect(self, val: int) -> None:
        sel = self.ioregsel
        if sel in (VIOAPIC_REG_VERSION, VIOAPIC_REG_ARB_ID):
            return                              # writes are ignored
        if sel == VIOAPIC_REG_APIC_ID:
            self.id = (val >> 24) & 0xF
            return
        idx = (sel - VIOAPIC_REG_RTE0) >> 1
        if not 0 <= idx < self.nr_pins:
            return
        old = self.redirtbl[idx]
        if sel & 1:
            new = (old & 0xFFFF_FFFF) | (val << 32)          # the top word holds the destination
        else:
            new = ((old >> 32) << 32) | val
            new = (new & ~(RTE_DELIVERY_STATUS | RTE_REMOTE_IRR)) | (old & RTE_REMOTE_IRR)
        self.redirtbl[idx] = new

    def read(self, host, v, gpa: int, size: int) -> int:
        reg = gpa & 0xFF
        if reg == VIOAPIC_REG_SELECT:
            result = self.ioregsel
        elif reg == VIOAPIC_REG_WINDOW:
            result = self._read_indirect()
        else:
            result = 0
        return result & ((1 << (8 * size)) - 1)

    def write(self, host, v, gpa: int, size: int, value: int) -> None:
        reg = gpa & 0xFF
        value &= 0xFFFF_FFFF
        if reg == VIOAPIC_REG_SELECT:
            self.ioregsel = value
        elif reg == VIOAPIC_REG_WINDOW:
            self._write_indirect(value)

    def register_name(self, gpa: int) -> str:
        reg = gpa & 0xFF
        if reg == VIOAPIC_REG_SELECT:
            return "IOREGSEL"
        if reg == VIOAPIC_REG_WINDOW:
            sel = self.ioregsel
            if sel == VIOAPIC_REG_APIC_ID:
                return "IOWIN: ID"
            if sel == VIOAPIC_REG_VERSION:
                return "IOWIN: version"
            if sel == VIOAPIC_REG_ARB_ID:
                return "IOWIN: arbitration"
            idx = (sel - VIOAPIC_REG_RTE0) >> 1
            if 0 <= idx < self.nr_pins:
                return f"IOWIN: redirection entry {idx} {'high' if sel & 1 else 'low'}"
            return f"IOWIN: undefined register {sel:#x}"
        return f"reserved {reg:#x}"
