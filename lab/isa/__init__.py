"""The teaching instruction set: registers, opcodes, encoding, assembler and disassembler.

The usual entry points::

    from lab.isa import assemble_file, disassemble, render_listing
    image = assemble_file("machines/programs/workload.s")
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

#: Where each entry point lives. They load on first use, so that importing one module of
#: the package (``lab.isa.encoding`` for a decoder) does not load the assembler too.
_HOMES = {
    "AsmError": "assembler", "assemble": "assembler", "assemble_file": "assembler",
    "assemble_line": "assembler",
    "disassemble": "disassembler", "disassemble_bytes": "disassembler",
    "INSN_SIZE": "encoding", "DecodeError": "encoding", "Instruction": "encoding", "Mem": "encoding",
    "decode": "encoding", "encode": "encoding",
    "Image": "image", "ImageFormatError": "image", "Section": "image", "SourceLine": "image",
    "render_listing": "listing",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


__all__ = list(_HOMES)
