"""physdev_op: what a domain may ask of the host's interrupts and PCI devices.

Xen's rules (``xen/arch/x86/physdev.c`` ``do_physdev_op()``, and for HVM
guests the filter in front of it, ``hvm_physdev_op()`` in
``xen/arch/x86/hvm/hypercall.c``):

* what touches the host's hardware (the IO-APIC, GSIs, PCI devices and MSI-X,
  the MMCONFIG areas, the debug port) is the hardware domain's: the default
  XSM policy (``XSM_PRIV``) answers anyone else -EPERM;
* mapping or unmapping a pirq is the device model's (``XSM_DM_PRIV``): a domU
  gets -EPERM, even for itself;
* a domain's own pirq bookkeeping (EOI, status, a free pirq number, the EOI
  bitmap page, its virtual IOPL and I/O bitmap) is its own to use. The lab's
  domUs have no physical interrupts, so those find nothing to act on.

An HVM guest may use only the sub-ops ``hvm_physdev_op()`` lets through; the
others are -ENOSYS before any of the above.
"""

from __future__ import annotations

import struct

from . import abi
from .guestmem import copy_from_guest, copy_to_guest
from ..hw.x86 import is_canonical
from .hypercall_table import X86_HYPERCALLS

E = abi.ERRNO
#: Interrupt lines the lab's host has: the legacy PIC's (no IO-APIC), Xen's nr_irqs_gsi.
NR_IRQS_GSI = 16
#: xen/common/domain.c DEFAULT_EXTRA_DOMU_IRQS: pirqs a domU has beyond the static ones.
EXTRA_DOMU_IRQS = 32
#: public/arch-x86/xen.h IOBMP_BYTES: a full I/O bitmap, 65536 ports.
IOBMP_BYTES = 8192

#: Sub-ops the default XSM policy keeps for the hardware domain (XSM_PRIV, or an explicit
#: is_hardware_domain() check), each with the errno checks Xen makes before it.
_HWDOM_ONLY = frozenset((
    abi.PHYSDEVOP_apic_read, abi.PHYSDEVOP_apic_write, abi.PHYSDEVOP_alloc_irq_vector,
    abi.PHYSDEVOP_manage_pci_add, abi.PHYSDEVOP_manage_pci_remove, abi.PHYSDEVOP_manage_pci_add_ext,
    abi.PHYSDEVOP_prepare_msix, abi.PHYSDEVOP_release_msix, abi.PHYSDEVOP_pci_mmcfg_reserved,
    abi.PHYSDEVOP_setup_gsi, abi.PHYSDEVOP_dbgp_op, abi.PHYSDEVOP_pci_device_add,
    abi.PHYSDEVOP_pci_device_remove, abi.PHYSDEVOP_pci_device_reset,
))
#: The size of each sub-op's argument, read (copy_from_guest) before the permission check
#: where Xen reads it first; a bad pointer is then -EFAULT.
_ARG_SIZE = {
    abi.PHYSDEVOP_eoi: 4, abi.PHYSDEVOP_irq_status_query: 8, abi.PHYSDEVOP_set_iopl: 4,
    abi.PHYSDEVOP_set_iobitmap: 16, abi.PHYSDEVOP_apic_read: 16, abi.PHYSDEVOP_apic_write: 16,
    abi.PHYSDEVOP_alloc_irq_vector: 8, abi.PHYSDEVOP_map_pirq: 40, abi.PHYSDEVOP_unmap_pirq: 8,
    abi.PHYSDEVOP_manage_pci_add: 2, abi.PHYSDEVOP_manage_pci_remove: 2, abi.PHYSDEVOP_manage_pci_add_ext: 16,
    abi.PHYSDEVOP_pirq_eoi_gmfn_v1: 8, abi.PHYSDEVOP_pirq_eoi_gmfn_v2: 8, abi.PHYSDEVOP_restore_msi: 2,
    abi.PHYSDEVOP_restore_msi_ext: 4, abi.PHYSDEVOP_setup_gsi: 8, abi.PHYSDEVOP_get_free_pirq: 8,
    abi.PHYSDEVOP_prepare_msix: 4, abi.PHYSDEVOP_release_msix: 4, abi.PHYSDEVOP_pci_device_add: 4,
    abi.PHYSDEVOP_pci_device_remove: 4, abi.PHYSDEVOP_pci_device_reset: 4,
}
_NAMES = {getattr(abi, n): n for n in dir(abi) if n.startswith("PHYSDEVOP_") and isinstance(getattr(abi, n), int)}


def nr_pirqs(dom) -> int:
    """d->nr_pirqs: the static lines plus the extra ones (xen/common/domain.c)."""
    return NR_IRQS_GSI + EXTRA_DOMU_IRQS


def _hvm_refusal(dom, cmd: int) -> int | None:
    """hvm_physdev_op(): the sub-ops an HVM guest may not make at all."""
    if cmd in (abi.PHYSDEVOP_map_pirq, abi.PHYSDEVOP_unmap_pirq):
        return None
    if cmd in abi.HVM_PIRQ_ONLY_PHYSDEVOP:
        return -E["ENOSYS"]           # has_pirq(): the lab never sets XEN_X86_EMU_USE_PIRQ
    if cmd in abi.HVM_HWDOM_PHYSDEVOP and dom.privileged:
        return None
    return -E["ENOSYS"]


@X86_HYPERCALLS.handler("physdev_op")
def physdev_op(host, v, args, info) -> int:
    cmd, va = args[0] & 0xFFFF_FFFF, args[1]
    dom = v.domain
    info["args"] = [_NAMES.get(cmd, str(cmd))]
    if dom.is_hvm:
        refused = _hvm_refusal(dom, cmd)
        if refused is not None:
            info["why"] = "not a physdev_op an HVM guest may make (hvm_physdev_op)"
            return refused
    if cmd == abi.PHYSDEVOP_dbgp_op and not dom.privileged:
        return _denied(info, "the hardware domain's")          # checked before the copy
    if cmd == abi.PHYSDEVOP_pci_mmcfg_reserved and not dom.privileged:
        return _denied(info, "XSM_PRIV")                        # checked before the copy
    size = _ARG_SIZE.get(cmd)
    if size is None:
        if cmd == abi.PHYSDEVOP_IRQ_UNMASK_NOTIFY:
            return 0                                            # pirq_guest_unmask(): none to unmask
        return -E["ENOSYS"]                                     # pci_physdev_op()'s default
    raw = copy_from_guest(host, v, va, size)
    if cmd == abi.PHYSDEVOP_setup_gsi:
        gsi = struct.unpack_from("<i", raw)[0]
        if not 0 <= gsi < NR_IRQS_GSI:
            return -E["EINVAL"]
    if cmd == abi.PHYSDEVOP_manage_pci_add_ext:
        is_extfn, is_virtfn = struct.unpack_from("<II", raw, 4)    # after u8 bus, u8 devfn
        if is_extfn > 1 or is_virtfn > 1:
            return -E["EINVAL"]
    if cmd in _HWDOM_ONLY:
        if not dom.privileged:
            return _denied(info, "XSM_PRIV: the hardware domain's")
        info["why"] = "the lab's host has no such hardware"
        return -E["ENODEV"]
    if cmd in (abi.PHYSDEVOP_map_pirq, abi.PHYSDEVOP_unmap_pirq):
        domid = struct.unpack_from("<H", raw)[0]
        target = dom if domid in (abi.DOMID_SELF, dom.domid) else host.domains.get(domid)
        if target is None:
            return -E["ESRCH"]
        if not dom.privileged:
            return _denied(info, "XSM_DM_PRIV: the device model's")
        info["why"] = "the lab's host has no physical interrupts to map"
        return -E["EINVAL"]
    if cmd in (abi.PHYSDEVOP_restore_msi, abi.PHYSDEVOP_restore_msi_ext):
        return -E["ENODEV"]                                     # pci_get_pdev() finds no device
    if cmd == abi.PHYSDEVOP_eoi:
        return -E["EINVAL"]                                     # no pirq_info(): nothing bound
    if cmd == abi.PHYSDEVOP_irq_status_query:
        irq = struct.unpack_from("<i", raw)[0]
        if not 0 <= irq < nr_pirqs(dom):
            return -E["EINVAL"]
        copy_to_guest(host, v, va + 4, abi.XENIRQSTAT_needs_eoi.to_bytes(4, "little"))
        return 0
    if cmd == abi.PHYSDEVOP_set_iopl:
        iopl = struct.unpack_from("<I", raw)[0]
        if iopl > 3:
            return -E["EINVAL"]
        # Recorded, and it grants nothing: a domU has no I/O port capability, so its port
        # accesses still fault (ioports_access_permitted(), pv/emul-priv-op.c).
        dom.extra.setdefault("pv_iopl", {})[v.id] = iopl
        return 0
    if cmd == abi.PHYSDEVOP_set_iobitmap:
        bitmap, nr_ports = struct.unpack_from("<QI", raw)
        if not _guest_range_ok(bitmap, IOBMP_BYTES) or nr_ports > 65536:
            return -E["EINVAL"]
        dom.extra.setdefault("pv_iobitmap", {})[v.id] = (bitmap, nr_ports)
        return 0
    if cmd in (abi.PHYSDEVOP_pirq_eoi_gmfn_v1, abi.PHYSDEVOP_pirq_eoi_gmfn_v2):
        return _pirq_eoi_gmfn(host, dom, struct.unpack_from("<Q", raw)[0], info)
    if cmd == abi.PHYSDEVOP_get_free_pirq:
        return _get_free_pirq(host, v, dom, va, struct.unpack_from("<i", raw)[0])
    return -E["ENOSYS"]


def _denied(info: dict, why: str) -> int:
    info["why"] = why
    return -E["EPERM"]


def _guest_range_ok(va: int, n: int) -> bool:
    """guest_handle_okay(): the range is canonical and below Xen's part of the address space."""
    end = va + n - 1
    return is_canonical(va) and is_canonical(end) and (end < 0xFFFF_8000_0000_0000 or va >= 0xFFFF_8800_0000_0000)


def _pirq_eoi_gmfn(host, dom, gmfn: int, info: dict) -> int:
    """The domain's EOI bitmap page: its own RAM, held writable for as long as the domain lives."""
    # get_page_from_gfn(): a PV domain names machine frames, a translated one its gfns
    holder = f"d{dom.domid} pirq EOI map"
    held = (host.frames.hold(dom.domid, gmfn, writable=True, holder=holder) if dom.is_pv
            else host.frames.hold_gfn(dom, gmfn, writable=True, holder=holder))
    if isinstance(held, int):
        info["why"] = "not a frame of the domain's that can be written"
        return -E["EINVAL"]
    if dom.extra.get("pirq_eoi_map") is not None:
        held.release()
        return -E["EBUSY"]                                      # one per domain (the cmpxchg)
    dom.extra["pirq_eoi_map"] = held
    return 0


def _get_free_pirq(host, v, dom, va: int, type_: int) -> int:
    """get_free_pirq() (arch/x86/irq.c): a GSI-type pirq from the lines above the ISA ones, else
    the highest free one above the static lines; -ENOSPC when none is left."""
    used = dom.extra.setdefault("pirqs", [])
    order = list(range(16, NR_IRQS_GSI)) if type_ == abi.MAP_PIRQ_TYPE_GSI else []
    order += range(nr_pirqs(dom) - 1, NR_IRQS_GSI - 1, -1)
    for pirq in order:
        if pirq not in used:
            used.append(pirq)
            copy_to_guest(host, v, va + 4, pirq.to_bytes(4, "little"))
            return 0
    return -E["ENOSPC"]
