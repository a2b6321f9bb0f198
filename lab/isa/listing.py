"""The assembler listing: every item with its address, its bytes and its source line.

    Section .text (0x0000000000400000-0x000000000040002f, 48 bytes):
    0000000000400000 <_start>:
    0000000000400000  01 39 00 00 ff ff 00 00 00000000 05000000  mov rax, 5

An A64 instruction (an image assembled after ``.arch arm64``) is its 32-bit
word, as ``objdump -d`` shows it. An x86-profile instruction's 16 bytes are shown as its eight head bytes (opcode, form,
registers, base, index, scale, aux), then the displacement and the immediate
as two four-byte groups (or one eight-byte group for a 64-bit immediate), all
in memory order, so they read exactly as a hex dump of memory would.
"""

from __future__ import annotations

from .encoding import INSN_SIZE
from .image import Image

_ENC_WIDTH = 8 * 3 - 1 + 1 + 8 + 1 + 8
_ROW = 8            # data bytes per line
_MAX_ROWS = 4       # longer data items are elided after a few rows


def _insn_bytes(raw: bytes) -> str:
    head = " ".join(f"{b:02x}" for b in raw[:8])
    if raw[1] & 0x40:                       # imm64: bytes 8-15 are one immediate
        return f"{head} {raw[8:].hex()}"
    return f"{head} {raw[8:12].hex()} {raw[12:16].hex()}"


def render_listing(image: Image) -> str:
    out: list[str] = []
    for sec in image.sections:
        if out:
            out.append("")
        out.append(f"Section {sec.name} ({sec.base:#018x}-{sec.end - 1:#018x}, {len(sec.data)} bytes):")
        labels = sorted((v, i, k) for i, (k, v) in enumerate(image.symbols.items())
                        if k in image.label_names and sec.base <= v <= sec.end)
        items = [a for a in image.line_map if sec.contains(a)]
        li = 0
        for addr in sorted(items):
            while li < len(labels) and labels[li][0] <= addr:
                out.append(f"{labels[li][0]:016x} <{labels[li][2]}>:")
                li += 1
            text = image.line_map[addr].text.strip()
            size = image.item_sizes.get(addr, INSN_SIZE)
            raw = image.bytes_at(addr, size)
            if addr in image.instructions:
                # An A64 instruction is one little-endian word, shown as objdump shows it.
                enc = f"{int.from_bytes(raw, 'little'):08x}" if image.arch == "arm64" else _insn_bytes(raw)
                out.append(f"{addr:016x}  {enc:<{_ENC_WIDTH}}  {text}")
                continue
            rows = [raw[i:i + _ROW] for i in range(0, len(raw), _ROW)]
            shown = rows if len(rows) <= _MAX_ROWS else rows[:_MAX_ROWS - 1]
            for k, row in enumerate(shown):
                enc = " ".join(f"{b:02x}" for b in row)
                line = f"{addr + k * _ROW:016x}  {enc:<{_ENC_WIDTH}}"
                out.append(f"{line}  {text}" if k == 0 else line.rstrip())
            if len(shown) < len(rows):
                rest = len(raw) - len(shown) * _ROW
                out.append(f"{addr + len(shown) * _ROW:016x}  ... {rest} more bytes")
        for value, _, name in labels[li:]:
            out.append(f"{value:016x} <{name}>:")
    return "\n".join(out) + "\n" if out else ""
