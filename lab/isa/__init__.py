"""The teaching instruction set: registers, opcodes, encoding, assembler and disassembler.

The usual entry points::

    from lab.isa import assemble_file, disassemble, render_listing
    image = assemble_file("machines/programs/workload.s")
"""

from __future__ import annotations

from .assembler import AsmError, assemble, assemble_file, assemble_line
from .disassembler import disassemble, disassemble_bytes
from .encoding import INSN_SIZE, DecodeError, Instruction, Mem, decode, encode
from .image import Image, ImageFormatError, Section, SourceLine
from .listing import render_listing

__all__ = [
    "AsmError", "assemble", "assemble_file", "assemble_line",
    "disassemble", "disassemble_bytes",
    "INSN_SIZE", "DecodeError", "Instruction", "Mem", "decode", "encode",
    "Image", "ImageFormatError", "Section", "SourceLine",
    "render_listing",
]
