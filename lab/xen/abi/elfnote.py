"""ELF notes a guest kernel carries (public/elfnote.h), the PVH start info
(public/arch-x86/hvm/start_info.h) and the Xen platform PCI device
(docs/man/xen-pci-device-reservations.7.pod).
"""

from __future__ import annotations

XEN_ELFNOTE_ENTRY = 1
XEN_ELFNOTE_HYPERCALL_PAGE = 2
XEN_ELFNOTE_VIRT_BASE = 3
XEN_ELFNOTE_GUEST_OS = 6
XEN_ELFNOTE_FEATURES = 10
XEN_ELFNOTE_PHYS32_ENTRY = 18
XEN_HVM_START_MAGIC_VALUE = 0x336EC578

# Xen platform PCI device (docs/man/xen-pci-device-reservations.7.pod).
XEN_PLATFORM_VENDOR_ID = 0x5853
XEN_PLATFORM_DEVICE_ID = 0x0001
