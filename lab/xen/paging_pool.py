"""Each translated domain's paging pool: the frames its EPT (HAP) or shadow tables come from.

Xen does not take a domain's p2m or shadow tables from memory shared by all
domains: each domain has a pool of its own (``d->arch.paging``, filled by
``hap_set_allocation()`` / ``shadow_set_allocation()``), sized by the toolstack
when the domain is built. A guest that makes its tables grow (remapping gfns
far apart, loading ever new CR3s under shadow paging) can exhaust only its own
pool: the p2m update fails with -ENOMEM, and no other domain notices.

The size is libxl's (``libxl_get_required_shadow_memory()``, tools/libs/light/
libxl_utils.c): 1 MiB per vCPU plus 2 pages per MiB of RAM, unless xl.cfg's
``shadow_memory`` (MiB) says otherwise; Xen never gives a HAP domain fewer than
256 pages (``hap_enable()``). Frames come from Xen's heap, belong to Xen, and go
back to the heap when the domain is destroyed.
"""

from __future__ import annotations

#: hap_enable(): the least a HAP domain's pool holds, in pages.
HAP_MIN_PAGES = 256
#: shadow_min_acceptable_pages() (mm/shadow/common.c): the least a shadow domain's pool holds, per vCPU.
SHADOW_MIN_PAGES_PER_VCPU = 128


class PoolExhausted(Exception):
    """The domain's paging pool has no frame left (the p2m or shadow update fails)."""


def required_pages(mem_mib: int, vcpus: int, shadow_memory_mib: int | None = None, hap: bool = True) -> int:
    """Pages of a new domain's paging pool, as libxl asks for them."""
    if shadow_memory_mib:
        pages = shadow_memory_mib * 256
    else:
        kib = 4 * (256 * max(vcpus, 1) + 2 * mem_mib)     # libxl_get_required_shadow_memory()
        pages = kib // 4
    if hap:
        return max(pages, HAP_MIN_PAGES)
    # sh_min_allocation(): shadow_min_acceptable_pages(), plus a page per 256 of the domain's (at
    # least CONFIG_PAGING_LEVELS + 2) and one for the 1:1 map
    return max(pages, SHADOW_MIN_PAGES_PER_VCPU * max(vcpus, 1) + max(mem_mib, 6) + 1)


class PagingPool:
    """The frames one domain's EPT or shadow tables may use."""

    def __init__(self, host, domid: int, pages: int) -> None:
        self.host = host
        self.domid = domid
        self.pages = pages
        #: Every frame the pool took from Xen's heap, in use or not.
        self.frames: list[int] = []
        #: Frames given back by the tables' owner (shadow_free()), zeroed, ready to use again.
        self.spare: list[int] = []

    @property
    def free(self) -> int:
        return self.pages - len(self.frames) + len(self.spare)

    def alloc(self) -> int:
        """A zeroed frame of Xen's for this domain's tables; PoolExhausted when none is left."""
        if self.spare:
            return self.spare.pop()
        if len(self.frames) >= self.pages or not self.host.free_frames:
            raise PoolExhausted(f"d{self.domid}'s paging pool ({self.pages} pages) is exhausted")
        mfn = self.host.alloc_frame(None)              # Xen's frame (DOMID_XEN), from the heap
        self.frames.append(mfn)
        return mfn

    def give_back(self, mfn: int) -> None:
        """A table is no longer used: its frame stays the pool's, wiped, for the next table."""
        self.host.mem.write(mfn << 12, bytes(4096))
        self.spare.append(mfn)

    def release_all(self) -> None:
        """The domain is gone: its tables go back to Xen's heap (paging_teardown())."""
        for mfn in self.frames:
            self.host.mm.release(mfn)
            if self.host.mm.pv.pages[mfn].owner is None:
                self.host.free_frame(mfn)
        self.frames.clear()
        self.spare.clear()


def pool_of(host, dom) -> PagingPool:
    """The domain's pool, made at its first use with the size its config asks for."""
    pool = dom.extra.get("paging_pool")
    if pool is None:
        mem_mib = dom.max_pages * 4096 >> 20
        pool = PagingPool(host, dom.domid, required_pages(mem_mib, len(dom.vcpus) or 1, shadow_memory(dom.config),
                                                          hap=bool(dom.hap and host.config.ept)))
        dom.extra["paging_pool"] = pool
    return pool


def shadow_memory(conf) -> int | None:
    """xl.cfg's ``shadow_memory`` (MiB), if the config gives a number."""
    value = getattr(conf, "host_keys", {}).get("shadow_memory") if conf is not None else None
    text = getattr(value, "text", None)
    return int(text) if text is not None and text.isascii() and text.isdigit() and int(text) > 0 else None

