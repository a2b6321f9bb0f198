"""Which source line is at an address, and whether it is in the hypercall page.

One answer for every part of the lab that names a place in guest code: the
source view, the event explanations and the log panes. A kernel reserves its
hypercall page with ``.zero 4096`` under the symbol ``hypercall_page``; Xen
writes the page's stubs when it builds the domain (PV) or when the kernel asks
for it (HVM: a write to the MSR that CPUID leaf 0x40000002 names; see
xen/arch/x86/hypercall.c), so an address inside it has no source line of its
own: it is a place in Xen's page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from ..xen.abi import HYPERCALL_STUB_SIZE

#: How a place in a domain's hypercall page is named.
HYPERCALL_PAGE_LABEL = "hypercall page (written by Xen)"
HYPERCALL_PAGE_SIZE = 4096


@dataclass(frozen=True)
class Place:
    """Where an address is: a source line of an image, or an offset in the hypercall page."""
    addr: int
    file: str | None = None
    line: int | None = None
    text: str = ""
    #: The hypercall page's start when the address is inside it, else None.
    page: int | None = None

    @property
    def in_hypercall_page(self) -> bool:
        return self.page is not None

    @property
    def offset(self) -> int:
        return self.addr - self.page if self.page is not None else 0

    @property
    def stub(self) -> int | None:
        """The hypercall whose 32-byte stub holds this address (hypercall ``nr`` at page + 32 * nr)."""
        return self.offset // HYPERCALL_STUB_SIZE if self.page is not None else None


class SourceMap:
    """The images loaded into one address space (a domain, or the bare machine)."""

    def __init__(self, images: Iterable[Any]) -> None:
        self.images = tuple(images)

    def hypercall_page_at(self, addr: int) -> int | None:
        """The start of the hypercall page if ``addr`` is inside it, else None."""
        for image in self.images:
            base = image.symbols.get("hypercall_page")
            if base is not None and base <= addr < base + HYPERCALL_PAGE_SIZE:
                return base
        return None

    def place(self, addr: int) -> Place | None:
        """The place of ``addr``, or None where no image has a line for it."""
        page = self.hypercall_page_at(addr)
        if page is not None:
            return Place(addr, page=page)
        for image in self.images:
            sl = image.source_line(addr)
            if sl is not None:
                return Place(addr, sl.file, sl.line, sl.text)
        return None
