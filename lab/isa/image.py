"""An assembled program: its sections, symbols and the source they came from.

The image is what the loader copies into guest memory and what the source
pane, the disassembler and recordings read to map an address back to a line
of assembly.

Container format (``to_bytes`` / ``from_bytes``, what ``xenlab asm -o``
writes)::

    bytes 0-7    magic b"XLIMAGE1"
    bytes 8-11   length N of the header, unsigned 32-bit little endian
    next N       the header: UTF-8 JSON, an object with
                   "entry"    int
                   "sections" [{"name", "base", "size"}, ...] in image order
                   "symbols"  {name: int}            (source order)
                   "labels"   [name, ...]            (the symbols that are labels)
                   "lines"    [[addr, size, kind, file, line, text], ...]
                              (kind "insn" or "data")
                   "sources"  {file: text}
                   "arch"     "arm64" for an Arm image (absent: x86_64)
    the rest     the section contents, concatenated in the order listed

Everything is plain data, so the same source always gives the same bytes.
"""

from __future__ import annotations

import bisect
import json
import pickle
import struct
from dataclasses import dataclass, field

MAGIC = b"XLIMAGE1"
#: What maps addresses back to source lines: kept pickled in a stored image until first read.
_LINE_FIELDS = ("line_map", "item_sizes", "instructions")


class ImageFormatError(ValueError):
    """The bytes given to :meth:`Image.from_bytes` are not an image."""


@dataclass(frozen=True)
class SourceLine:
    file: str      # as given to the assembler (a relative path)
    line: int      # 1-based
    text: str      # the whole line, comment included


@dataclass
class Section:
    name: str
    base: int              # virtual address of data[0]
    data: bytearray

    @property
    def end(self) -> int:
        return self.base + len(self.data)

    def contains(self, addr: int) -> bool:
        return self.base <= addr < self.end


@dataclass
class Image:
    STATE_CONSTANT = True       # assembled code: snapshots keep it by identity
    sections: list[Section] = field(default_factory=list)
    symbols: dict[str, int] = field(default_factory=dict)
    line_map: dict[int, SourceLine] = field(default_factory=dict)
    entry: int = 0
    sources: dict[str, str] = field(default_factory=dict)
    #: Which of ``symbols`` are labels (the rest are .equ constants).
    label_names: set[str] = field(default_factory=set)
    #: Byte length of the item (instruction or data directive) at each line_map address.
    item_sizes: dict[int, int] = field(default_factory=dict)
    #: The line_map addresses that hold instructions (the others hold data).
    instructions: set[int] = field(default_factory=set)
    #: The instruction set: "x86_64" (the lab's 16-byte encoding) or "arm64" (A64 words).
    arch: str = "x86_64"
    # Sorted line_map addresses, rebuilt when line_map changes size (lookups happen every step).
    _starts: list[int] = field(default_factory=list, init=False, repr=False, compare=False)

    # -- pickling: the line maps stay packed until something reads them ----
    # A kernel's line map is thousands of SourceLine objects (about 5 ms to unpickle each);
    # running a kernel never reads it, the source pane and listings do.
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if "line_map" in state:
            state["_packed_lines"] = pickle.dumps(tuple(state.pop(k) for k in _LINE_FIELDS),
                                                  protocol=pickle.HIGHEST_PROTOCOL)
        return state

    def __getattr__(self, name: str):
        # Called only for a missing attribute: the line maps of an image not yet unpacked.
        # The packed copy goes only once the fields are set, and the first values set stay:
        # a second thread asking meanwhile unpacks the same and gets the first's.
        packed = self.__dict__.get("_packed_lines") if name in _LINE_FIELDS else None
        if packed is None:
            raise AttributeError(name)
        for field_name, value in zip(_LINE_FIELDS, pickle.loads(packed)):
            self.__dict__.setdefault(field_name, value)
        self.__dict__.pop("_packed_lines", None)
        return self.__dict__[name]

    # -- lookups --------------------------------------------------------
    def section_at(self, addr: int) -> Section | None:
        for s in self.sections:
            if s.contains(addr):
                return s
        return None

    def source_line(self, addr: int) -> SourceLine | None:
        """The source line of the instruction or data item that holds ``addr``."""
        starts = self._item_starts()
        i = bisect.bisect_right(starts, addr) - 1
        if i < 0:
            return None
        start = starts[i]
        # Instructions own their whole slot (16 bytes, or 4 for A64); data items own their bytes.
        if addr < start + max(self.item_sizes.get(start, 16), 1):
            return self.line_map[start]
        return None

    def labels(self) -> dict[str, int]:
        """Only the labels (no constants), in source order: what a disassembler should name."""
        return {k: v for k, v in self.symbols.items() if k in self.label_names}

    def symbol_at(self, addr: int) -> str | None:
        """``addr`` as the nearest label at or below it in the same section: "label" or "label+0x10"."""
        sec = self.section_at(addr)
        if sec is None:
            return None
        best: tuple[int, str] | None = None
        for name, value in self.symbols.items():
            if name not in self.label_names or not sec.base <= value <= addr:
                continue
            # The highest address wins; at equal addresses a global name beats a
            # local one, then the first defined.
            if best is None or value > best[0] or (value == best[0] and "." in best[1] and "." not in name):
                best = (value, name)
        if best is None:
            return None
        off = addr - best[0]
        return best[1] if off == 0 else f"{best[1]}+{off:#x}"

    def bytes_at(self, addr: int, n: int) -> bytes:
        """``n`` bytes from ``addr``; bytes no section covers read as zero."""
        out = bytearray(n)
        for s in self.sections:
            lo, hi = max(addr, s.base), min(addr + n, s.end)
            if lo < hi:
                out[lo - addr:hi - addr] = s.data[lo - s.base:hi - s.base]
        return bytes(out)

    def _item_starts(self) -> list[int]:
        if len(self._starts) != len(self.line_map):
            self._starts = sorted(self.line_map)
        return self._starts

    # -- container --------------------------------------------------------
    def to_bytes(self) -> bytes:
        header = {
            "entry": self.entry,
            "sections": [{"name": s.name, "base": s.base, "size": len(s.data)} for s in self.sections],
            "symbols": dict(self.symbols),
            "labels": [k for k in self.symbols if k in self.label_names],
            "lines": [[a, self.item_sizes.get(a, 16), "insn" if a in self.instructions else "data",
                       sl.file, sl.line, sl.text] for a, sl in sorted(self.line_map.items())],
            "sources": dict(self.sources),
        }
        if self.arch != "x86_64":           # absent for x86 images, so their bytes are as before
            header["arch"] = self.arch
        blob = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return MAGIC + struct.pack("<I", len(blob)) + blob + b"".join(bytes(s.data) for s in self.sections)

    @classmethod
    def from_bytes(cls, data: bytes) -> Image:
        data = bytes(data)
        if data[:8] != MAGIC or len(data) < 12:
            raise ImageFormatError("not a xenlab image (bad magic)")
        (n,) = struct.unpack_from("<I", data, 8)
        try:
            h = json.loads(data[12:12 + n].decode("utf-8"))
            img = cls(entry=int(h["entry"]), symbols={str(k): int(v) for k, v in h["symbols"].items()},
                      sources={str(k): str(v) for k, v in h["sources"].items()})
            img.label_names = {str(x) for x in h["labels"]}
            img.arch = str(h.get("arch", "x86_64"))
            if img.arch not in ("x86_64", "arm64"):
                raise ImageFormatError(f"unknown instruction set {img.arch!r}")
            for addr, size, kind, file, line, text in h["lines"]:
                img.line_map[int(addr)] = SourceLine(str(file), int(line), str(text))
                img.item_sizes[int(addr)] = int(size)
                if kind == "insn":
                    img.instructions.add(int(addr))
            pos = 12 + n
            for s in h["sections"]:
                size = int(s["size"])
                if pos + size > len(data):
                    raise ImageFormatError("truncated section data")
                img.sections.append(Section(str(s["name"]), int(s["base"]), bytearray(data[pos:pos + size])))
                pos += size
        except ImageFormatError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ImageFormatError(f"corrupt image header: {e}") from None
        if pos != len(data):
            raise ImageFormatError("trailing bytes after the last section")
        return img
