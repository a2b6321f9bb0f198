"""The guest memory map and numbers Xen on Arm fixes (``xen/include/public/arch-arm.h``).

An Arm guest sees one kind of machine whatever it is: RAM at GUEST_RAM0_BASE, a
GIC at fixed addresses, the grant table mapped where the device tree's
hypervisor node says, and a few "magic" pages for the console and xenstore rings
(``tools/libs/guest/xg_dom_arm.c``).
"""

from __future__ import annotations

from ...hw.arm import exceptions as X

from ..abi.arch_arm import (GUEST_EVTCHN_PPI, GUEST_GICV3_GICD_BASE, GUEST_GICV3_GICD_SIZE,  # noqa: F401
                            GUEST_GICV3_GICR0_BASE, GUEST_GICV3_GICR0_SIZE, GUEST_GNTTAB_BASE,
                            GUEST_GNTTAB_SIZE, GUEST_MAGIC_BASE, GUEST_MAGIC_SIZE, GUEST_RAM0_BASE,
                            GUEST_RAM0_SIZE, GUEST_TIMER_PHYS_NS_PPI, GUEST_TIMER_PHYS_S_PPI,
                            GUEST_TIMER_VIRT_PPI, PSR_GUEST64_INIT, XEN_HYPERCALL_TAG)

#: xg_dom_arm.c: the magic pages after GUEST_MAGIC_BASE.
NR_MAGIC_PAGES = 4
CONSOLE_PFN_OFFSET = 0
XENSTORE_PFN_OFFSET = 1

#: Linux's arm64 Image is loaded at the start of RAM plus its text offset (0x80000).
KERNEL_TEXT_OFFSET = 0x80000

#: HCR_GUEST_FLAGS (xen/arch/arm/include/asm/processor.h) as far as the lab's core knows them:
#: stage 2 on, IRQs routed to EL2, wfi trapped, smc trapped, 64-bit EL1.
HCR_GUEST_FLAGS = X.HCR_VM | X.HCR_IMO | X.HCR_FMO | X.HCR_AMO | X.HCR_TWI | X.HCR_TSC | X.HCR_RW

#: struct shared_info on Arm: XEN_LEGACY_MAX_VCPUS is 1 and struct vcpu_info is 48 bytes
#: (u8 upcall_pending, u8 upcall_mask, xen_ulong_t pending_sel, empty arch part, 32-byte time),
#: so evtchn_pending[64] follows at 48 and evtchn_mask[64] at 560.
VCPU_INFO_SIZE = 48
SHINFO_PENDING = 48
SHINFO_MASK = 48 + 64 * 8

#: xl info's xen_caps on an arm64 host (xen/arch/arm/setup.c arch_get_xen_caps).
XEN_CAPS = "xen-3.0-aarch64 xen-3.0-armv7l"

#: HYPERVISOR_VIRT_START on arm64, which is XEN_VIRT_START (xen/arch/arm/include/asm/mmu/layout.h:
#: L0 slot 20 plus 2 MiB): what xl info's virt_start shows.
ARM64_HYPERVISOR_VIRT_START = (20 << 39) + (2 << 20)
