"""Xen's CPUID leaves: public/arch-x86/cpuid.h, values from xen/arch/x86/cpuid.c
(cpuid_hypervisor_leaves).
"""

from __future__ import annotations

XEN_CPUID_FIRST_LEAF = 0x40000000
XEN_CPUID_FIRST_LEAF_VIRIDIAN = 0x40000100   # when Viridian is on
XEN_CPUID_SIGNATURE = "XenVMMXenVMM"
XEN_CPUID_SIGNATURE_EBX = 0x566E6558   # "XenV"
XEN_CPUID_SIGNATURE_ECX = 0x65584D4D   # "MMXe"
XEN_CPUID_SIGNATURE_EDX = 0x4D4D566E   # "nVMM"
#: Default number of Xen leaves after the first; leaf 0 EAX = base + this.
XEN_CPUID_MAX_NUM_LEAVES = 5
XEN_CPUID_MAX_LEAF = XEN_CPUID_FIRST_LEAF + XEN_CPUID_MAX_NUM_LEAVES
#: Leaf base+2: EAX = hypercall pages (always 1), EBX = base of Xen's MSRs.
#: Writing a page's GPA to that MSR installs the hypercall page. cpuid.c puts
#: 0x40000000 there (0x40000200 with Viridian).
XEN_CPUID_HYPERCALL_PAGES = 1
XEN_HYPERCALL_MSR = 0x40000000
XEN_HYPERCALL_MSR_VIRIDIAN = 0x40000200
XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD = 1 << 0   # leaf base+2 ECX, PV only


def xen_cpuid_version(major: int, minor: int) -> int:
    """EAX of leaf base+1: major in bits 31:16, minor in 15:0."""
    return ((major & 0xFFFF) << 16) | (minor & 0xFFFF)


def _u32(s: str) -> int:
    return int.from_bytes(s.encode("ascii"), "little")


assert _u32("XenV") == XEN_CPUID_SIGNATURE_EBX
assert _u32("MMXe") == XEN_CPUID_SIGNATURE_ECX
assert _u32("nVMM") == XEN_CPUID_SIGNATURE_EDX
