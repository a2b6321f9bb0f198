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


class PoolExhausted(Exception):
    """The domain's paging pool has no frame left (the p2m or shadow update fails)."""


def required_pages(mem_mib: int, vcpus: int, shadow_memory_mib: int | None = None, hap: bool = True) -> int:
    """Pages of a new domain's paging pool, as libxl asks for them."""
    if shadow_memory_mib:
        pages = shadow_memory_mib * 256
    else:
        kib = 4 * (256 * max(vcpus, 1) + 2 * mem_mib)     # libxl_get_required_shadow_memory()
        pages = kib // 4
    return max(pages, HAP_MIN_PAGES) if hap else pages


class PagingPool:
    """The frames one domain's EPT or shadow tables may use."""

    def __init__(self, host, domid: int, pages: int) -> None:
        self.host = host
        self.domid = domid
        self.pages = pages
        self.frames: list[int] = []

    @property
    def free(self) -> int:
        return self.pages - len(self.frames)

    def alloc(self) -> int:
        """A zeroed frame of Xen's for this domain's tables; PoolExhausted when none is left."""
        if len(self.frames) >= self.pages or not self.host.free_frames:
            raise PoolExhausted(f"d{self.domid}'s paging pool ({self.pages} pages) is exhausted")
        mfn = self.host.alloc_frame(None)              # Xen's frame (DOMID_XEN), from the heap
        self.frames.append(mfn)
        return mfn

    def release_all(self) -> None:
        """The domain is gone: its tables go back to Xen's heap (paging_teardown())."""
        for mfn in self.frames:
            self.host.mm.release(mfn)
            if self.host.mm.pv.pages[mfn].owner is None:
                self.host.free_frame(mfn)
        self.frames.clear()


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

