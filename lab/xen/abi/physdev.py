"""physdev_op sub-ops (public/physdev.h) and which of them HVM may use.
"""

from __future__ import annotations

# physdev_op sub-ops (public/physdev.h) and what HVM may use.
PHYSDEVOP_irq_status_query = 5
PHYSDEVOP_set_iopl = 6
PHYSDEVOP_set_iobitmap = 7
PHYSDEVOP_apic_read = 8
PHYSDEVOP_apic_write = 9
PHYSDEVOP_alloc_irq_vector = 10
PHYSDEVOP_free_irq_vector = 11
PHYSDEVOP_eoi = 12
PHYSDEVOP_map_pirq = 13
PHYSDEVOP_unmap_pirq = 14
PHYSDEVOP_manage_pci_add = 15
PHYSDEVOP_manage_pci_remove = 16
PHYSDEVOP_pirq_eoi_gmfn_v1 = 17
PHYSDEVOP_restore_msi = 19
PHYSDEVOP_manage_pci_add_ext = 20
PHYSDEVOP_setup_gsi = 21
PHYSDEVOP_get_free_pirq = 23
PHYSDEVOP_pci_mmcfg_reserved = 24
PHYSDEVOP_pci_device_add = 25
PHYSDEVOP_pci_device_remove = 26
PHYSDEVOP_restore_msi_ext = 27
PHYSDEVOP_pirq_eoi_gmfn_v2 = 28
PHYSDEVOP_dbgp_op = 29
PHYSDEVOP_prepare_msix = 30
PHYSDEVOP_release_msix = 31
PHYSDEVOP_pci_device_reset = 32
#: physdev_op sub-ops open to HVM guests (xen/arch/x86/hvm/hypercall.c,
#: hvm_physdev_op); eoi, irq_status_query and get_free_pirq need pirq support.
HVM_ALLOWED_PHYSDEVOP = frozenset((
    PHYSDEVOP_map_pirq, PHYSDEVOP_unmap_pirq, PHYSDEVOP_eoi, PHYSDEVOP_irq_status_query,
    PHYSDEVOP_get_free_pirq,
))
HVM_PIRQ_ONLY_PHYSDEVOP = frozenset((PHYSDEVOP_eoi, PHYSDEVOP_irq_status_query,
                                     PHYSDEVOP_get_free_pirq))
#: ... and those open only to the hardware domain when it is HVM/PVH.
HVM_HWDOM_PHYSDEVOP = frozenset((
    PHYSDEVOP_setup_gsi, PHYSDEVOP_pci_mmcfg_reserved, PHYSDEVOP_pci_device_add,
    PHYSDEVOP_pci_device_remove, PHYSDEVOP_pci_device_reset, PHYSDEVOP_dbgp_op,
))
