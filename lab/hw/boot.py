"""Loading a kernel and its user program onto the bare machine.

The lab's boot protocol stands in for a boot loader (GRUB, multiboot): the
kernel image is copied to physical memory, the user program is copied in as a
boot module, and ``rbx`` points at a boot-info block describing both. The CPU
starts at the kernel's entry in flat protected mode, ring 0, paging off.

Sections linked in the kernel's direct map (at or above ``DIRECT_MAP``) are
loaded at ``address - DIRECT_MAP``, as a real higher-half kernel is.

boot_info layout (all little-endian u64)::

    0x00 magic (BOOT_MAGIC)        0x08 memory size in bytes
    0x10 number of segments        0x18 program entry (virtual)
    0x20 program argument (rdi)    0x28 first free physical address
    0x30 segments[8]: {virtual address, physical address, size, flags}
         flags bit 0 = writable, bit 1 = executable
"""

from __future__ import annotations

from dataclasses import dataclass

from ..isa.image import Image
from .memory import PAGE_SIZE

BOOT_MAGIC = 0x5842_414C_4E45_58    # "XENLABX" as bytes, little endian
BOOT_INFO = 0x7000
BOOT_STACK = 0x6FF0
MODULE_BASE = 0x0080_0000
DIRECT_MAP = 0xFFFF_8880_0000_0000
MAX_SEGMENTS = 8


class BootError(Exception):
    pass


@dataclass
class Segment:
    va: int
    pa: int
    size: int
    flags: int


def physical_of(va: int) -> int:
    return va - DIRECT_MAP if va >= DIRECT_MAP else va


def program_segments(image: Image, base: int) -> list[Segment]:
    """Lay the program's sections out as boot modules from ``base``."""
    segs = []
    pa = base
    for sec in image.sections:
        if not sec.data:
            continue
        size = (len(sec.data) + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        flags = 2 if sec.name in (".text", "text") else 1
        segs.append(Segment(sec.base, pa, len(sec.data), flags))
        pa += size
    if len(segs) > MAX_SEGMENTS:
        raise BootError(f"the program has {len(segs)} sections; at most {MAX_SEGMENTS} fit the boot info")
    return segs


@dataclass
class BootLayout:
    """Where everything goes in (pseudo-)physical memory, and the boot info block."""
    writes: list[tuple[int, bytes]]
    entry: int                 # the kernel's entry as an address (virtual for PV, physical otherwise)
    free: int                  # first free physical address after everything loaded
    info: bytes                # the boot information block, for BOOT_INFO
    segments: list[Segment]


def boot_layout(kernel: Image, program: Image | None, arg: int, mem_size: int) -> BootLayout:
    """Lay out kernel, program module and boot info as the lab's boot protocol says."""
    writes: list[tuple[int, bytes]] = []
    end = MODULE_BASE
    for sec in kernel.sections:
        if not sec.data:
            continue
        pa = physical_of(sec.base)
        if pa + len(sec.data) > mem_size:
            raise BootError(f"kernel section {sec.name} at {pa:#x} does not fit in {mem_size >> 20} MiB")
        writes.append((pa, bytes(sec.data)))
        end = max(end, pa + len(sec.data))
    segs: list[Segment] = []
    if program is not None:
        segs = program_segments(program, MODULE_BASE)
        for sec, seg in zip([s for s in program.sections if s.data], segs):
            writes.append((seg.pa, bytes(sec.data)))
            end = max(end, seg.pa + ((seg.size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)))
    free = (end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    if free >= mem_size:
        raise BootError(f"kernel and program need {free >> 20} MiB or more; the machine has {mem_size >> 20} MiB")
    info = [BOOT_MAGIC, mem_size, len(segs), program.entry if program else 0, arg, free]
    for seg in segs:
        info += [seg.va, seg.pa, seg.size, seg.flags]
    return BootLayout(writes, kernel.entry, free, b"".join(v.to_bytes(8, "little") for v in info), segs)


def boot_native(machine, kernel: Image, program: Image | None, arg: int = 0) -> None:
    """Put kernel and program in memory and point the CPU at the kernel."""
    mem = machine.mem
    layout = boot_layout(kernel, program, arg, mem.size)
    for pa, data in layout.writes:
        mem.write(pa, data)
    mem.write(BOOT_INFO, layout.info)
    cpu = machine.cpu
    cpu.rip = physical_of(kernel.entry)
    cpu.regs[3] = BOOT_INFO
    cpu.regs[4] = BOOT_STACK
    machine.images["kernel"] = kernel
    if program is not None:
        machine.images["program"] = program
    machine._emit("boot", mode="native", entry=cpu.rip,
                  message=f"kernel entry {cpu.rip:#x}, {len(layout.segments)} program segment(s), "
                          f"first free frame {layout.free:#x}")
