"""Xen's access to guest memory: copy_from_guest / copy_to_guest.

Hypercall arguments that are pointers are guest-virtual addresses. Xen
translates them through the calling vCPU's page tables: for a PV guest those
hold machine addresses directly; for an HVM or PVH guest they hold
guest-physical addresses that the p2m (EPT) turns into machine ones. A bad
pointer is -EFAULT for the hypercall, never a crash of Xen.
"""

from __future__ import annotations

from ..hw import paging
from ..hw.memory import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, BusError
from .abi import HYPERVISOR_VIRT_START, in_xen_reserved_va


class GuestFault(Exception):
    """A guest pointer that does not translate (the hypercall returns -EFAULT)."""


def gfn_to_maddr(dom, gpa: int) -> int:
    mfn = dom.gfn_to_mfn(gpa >> PAGE_SHIFT)
    if mfn is None:
        raise GuestFault(f"guest-physical address {gpa:#x} is outside d{dom.domid}'s memory")
    return (mfn << PAGE_SHIFT) | (gpa & PAGE_MASK)


def guest_va_to_maddr(host, vcpu, va: int, write: bool = False) -> int:
    dom = vcpu.domain
    cpu = vcpu.cpu
    if dom.is_pv:
        # Xen acts for the guest kernel: through the kernel's base table.
        root = vcpu.guest_table << 12 if vcpu.guest_table else cpu.cr3
        mem = host.mem
        # A walk that set no A/D bits is a pure function of the entries it read, so
        # a page walked before is reused while those entries are unchanged: one
        # read per level instead of a walk (create_bounce_frame pushes seven words).
        walks = cpu.xen_walks
        key = (root, va >> PAGE_SHIFT, write)
        hit = walks.get(key)
        if hit is not None:
            entries, page = hit
            read = mem.read_u64
            for addr, value in entries:
                if read(addr) != value:
                    break
            else:
                return page | (va & PAGE_MASK)
        res = paging.walk(mem, root, va, access="w" if write else "r", cpl=0, set_ad=False)
        if not res.ok:
            raise GuestFault(f"{va:#x} is not mapped {'writable ' if write else ''}in d{dom.domid}'s page tables")
        if len(walks) >= 64:            # bounded: a guest cannot make it grow
            walks.clear()
        walks[key] = (tuple((s.entry_hpa, s.entry) for s in res.steps), res.pa & ~PAGE_MASK)
        return res.pa
    if not cpu.paging:
        return gfn_to_maddr(dom, va)
    # As for a PV guest, a walk made before is reused while what it read is unchanged:
    # here the entries and the p2m entries that placed each table and the page.
    walks = cpu.xen_walks
    hvm_key = (cpu.cr3, va >> PAGE_SHIFT, write, "p2m")
    hit = walks.get(hvm_key)
    if hit is not None:
        entries, page_gfn, page = hit
        read, p2m = host.mem.read_u64, dom.gfn_to_mfn
        for gpa, hpa, value in entries:
            if p2m(gpa >> PAGE_SHIFT) != hpa >> PAGE_SHIFT or read(hpa) != value:
                break
        else:
            if p2m(page_gfn) == page >> PAGE_SHIFT:
                return page | (va & PAGE_MASK)

    def through_p2m(gpa: int, access: str):
        return gfn_to_maddr(dom, gpa), []
    res = paging.walk(host.mem, cpu.cr3, va, access="w" if write else "r", cpl=0, set_ad=False,
                      table_translate=through_p2m)
    if not res.ok:
        raise GuestFault(f"{va:#x} is not mapped in d{dom.domid}'s page tables")
    if len(walks) >= 64:
        walks.clear()
    walks[hvm_key] = (tuple((s.entry_addr, s.entry_hpa, s.entry) for s in res.steps), res.pa >> PAGE_SHIFT,
                  res.hpa & ~PAGE_MASK)
    return res.hpa


def _access_ok(va: int, n: int) -> None:
    """access_ok(): a guest pointer into Xen's own range is -EFAULT, never followed."""
    if n > 0 and (in_xen_reserved_va(va) or in_xen_reserved_va(va + n - 1)
                  or (va < HYPERVISOR_VIRT_START and va + n > HYPERVISOR_VIRT_START)):
        raise GuestFault(f"{va:#x} is in Xen's address range")


def copy_from_guest(host, vcpu, va: int, n: int) -> bytes:
    if vcpu.domain.is_pv:
        _access_ok(va, n)
    out = bytearray()
    while n > 0:
        chunk = min(n, PAGE_SIZE - (va & PAGE_MASK))
        try:
            out += host.mem.read(guest_va_to_maddr(host, vcpu, va), chunk)
        except BusError:
            raise GuestFault(f"{va:#x} maps no memory") from None
        va += chunk
        n -= chunk
    return bytes(out)


def copy_to_guest(host, vcpu, va: int, data: bytes) -> None:
    if vcpu.domain.is_pv:
        _access_ok(va, len(data))
    pos = 0
    while pos < len(data):
        chunk = min(len(data) - pos, PAGE_SIZE - (va & PAGE_MASK))
        try:
            host.mem.write(guest_va_to_maddr(host, vcpu, va, write=True), data[pos:pos + chunk])
        except BusError:
            raise GuestFault(f"{va:#x} maps no memory") from None
        va += chunk
        pos += chunk


def read_u64(host, vcpu, va: int) -> int:
    return int.from_bytes(copy_from_guest(host, vcpu, va, 8), "little")


def write_u64(host, vcpu, va: int, value: int) -> None:
    copy_to_guest(host, vcpu, va, (value & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "little"))
