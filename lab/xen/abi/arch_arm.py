"""xen/include/public/arch-arm.h: the Arm guest ABI (the names that differ from x86's).

The hypercall instruction's tag, the fixed guest memory map every Arm guest sees,
the PPIs Xen uses, and the PSTATE a vCPU starts with. Arm's own architectural
numbers (exception classes, HCR_EL2 bits, GIC list-register fields) are the
hardware's: ``lab.hw.arm``.
"""

from __future__ import annotations

#: The immediate of ``hvc`` that makes it a Xen hypercall.
XEN_HYPERCALL_TAG = 0xEA1

GUEST_GICV3_GICD_BASE = 0x03001000
GUEST_GICV3_GICD_SIZE = 0x00010000
GUEST_GICV3_GICR0_BASE = 0x03020000          # vCPU0..127
GUEST_GICV3_GICR0_SIZE = 0x01000000
GUEST_GNTTAB_BASE = 0x38000000
GUEST_GNTTAB_SIZE = 0x01000000
GUEST_MAGIC_BASE = 0x39000000
GUEST_MAGIC_SIZE = 0x01000000
GUEST_RAM0_BASE = 0x40000000                 # 3 GiB of low RAM at 1 GiB
GUEST_RAM0_SIZE = 0xC0000000

GUEST_TIMER_VIRT_PPI = 27
GUEST_TIMER_PHYS_S_PPI = 29
GUEST_TIMER_PHYS_NS_PPI = 30
GUEST_EVTCHN_PPI = 31

#: PSR_GUEST64_INIT: EL1h (PSR_MODE_EL1h 0x5) with D, A, I and F masked.
PSR_MODE_EL1h = 0x05
PSR_GUEST64_INIT = (0xF << 6) | PSR_MODE_EL1h
