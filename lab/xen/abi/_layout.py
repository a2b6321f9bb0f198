"""Wire layouts: where each field of a structure of Xen's public headers sits in guest memory."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    """``struct c_name`` on x86-64: its sizeof and each field's (offset, width) in bytes.

    Written out from the header, field by field; tests/test_abi_layouts.py holds
    each against the C declaration, laid out by ctypes with C's alignment rules.
    """

    c_name: str
    size: int
    fields: dict[str, tuple[int, int]]

    def at(self, name: str) -> int:
        """offsetof(struct c_name, name)"""
        return self.fields[name][0]
