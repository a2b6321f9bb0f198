"""The Xen release the lab models: what XENVER_version, XENVER_extraversion and Xen's CPUID leaf
0x40000001 report, and what the host prints when it starts (xen/Makefile's XEN_VERSION,
XEN_SUBVERSION and XEN_EXTRAVERSION)."""

from __future__ import annotations

XEN_VERSION = (4, 23, "-dev")
