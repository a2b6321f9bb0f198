"""Building machines from the learner's files, with errors as one clear line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .. import sources
from ..errors import UserError
from ..hw.boot import BootError, boot_native
from ..hw.costs import CostError, load_costs
from ..hw.machine import Machine
from ..isa.errors import AsmError
from ..isa.cache import assemble_file_cached
from ..isa.image import Image
from ..paths import KERNELS, PROGRAMS, display

DEFAULT_PROGRAM = PROGRAMS / "workload.s"
NATIVE_KERNEL = KERNELS / "native.s"

if TYPE_CHECKING:
    from ..hw.diskimage import DiskImage


def assemble(path: Path | str) -> Image:
    """Assemble a source file, turning every problem into a UserError."""
    p = Path(path)
    if not sources.exists(p):
        raise UserError(f"{display(p)}: no such file")
    if not sources.is_file(p):
        raise UserError(f"{display(p)}: is a directory, not an assembly file")
    try:
        return assemble_file_cached(p, include_dirs=[KERNELS, PROGRAMS])
    except AsmError as e:
        raise UserError(str(e)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{display(p)}: cannot read: {e}") from None


def native_machine(kernel: Path | str = NATIVE_KERNEL, program: Path | str | None = DEFAULT_PROGRAM,
                   arg: int = 0, mem_mib: int = 64, vendor: str = "intel",
                   costs: Path | str | None = None, keep_trace: bool = True,
                   disk: "DiskImage | None | bool" = True, nic: bool = True) -> Machine:
    """A bare machine with the kernel and user program loaded, ready to run.

    ``disk``: the image on the IDE primary master (True: an empty in-memory disk,
    None or False: no disk); ``nic``: an NE2000 whose wire ends at a peer that
    answers as 10.0.0.1."""
    try:
        cost_table = load_costs(costs)
    except CostError as e:
        raise UserError(str(e)) from None
    kimg = assemble(kernel)
    pimg = assemble(program) if program is not None else None
    m = Machine(mem_mib=mem_mib, vendor=vendor, costs=cost_table, keep_trace=keep_trace)
    from ..hw.diskimage import DiskImage
    from .native_pc import NativePc
    image = DiskImage.in_memory() if disk is True else (disk or None)
    m.pc = NativePc(m, image, nic=nic)
    try:
        boot_native(m, kimg, pimg, arg=arg)
    except BootError as e:
        raise UserError(f"{display(kernel)}: {e}") from None
    return m
