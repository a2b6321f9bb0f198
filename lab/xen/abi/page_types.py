"""Page types and type_info bits: xen/arch/x86/include/asm/mm.h.
"""

from __future__ import annotations

# Page types (xen/arch/x86/include/asm/mm.h). In Xen each PGT_x macro is the
# type already shifted into type_info bits 61-63 (PG_mask(x, 3)); the lab keeps
# the small type number and shifts with PGT_TYPE_SHIFT where it builds type_info.
PGT_none = 0
PGT_l1_page_table = 1
PGT_l2_page_table = 2
PGT_l3_page_table = 3
PGT_l4_page_table = 4
PGT_seg_desc_page = 5
PGT_shared_page = 6
PGT_writable_page = 7
PGT_TYPE_SHIFT = 61
PGT_type_mask = 7 << PGT_TYPE_SHIFT
PGT_NAMES = {0: "PGT_none", 1: "PGT_l1_page_table", 2: "PGT_l2_page_table",
             3: "PGT_l3_page_table", 4: "PGT_l4_page_table", 5: "PGT_seg_desc_page",
             6: "PGT_shared_page", 7: "PGT_writable_page"}
# Flag bits of type_info (PG_shift(n) = 64 - n).
_PGT_locked = 60
_PGT_pinned = 59
_PGT_validated = 58
_PGT_partial = 56
PGT_locked = 1 << _PGT_locked
PGT_pinned = 1 << _PGT_pinned
PGT_validated = 1 << _PGT_validated
PGT_partial = 1 << _PGT_partial
PGT_count_width = 55
PGT_count_mask = (1 << PGT_count_width) - 1


def pgt_type_info(pgt: int) -> int:
    """The type_info bits of page type ``pgt`` (the value of Xen's PGT_x macro)."""
    return (pgt & 7) << PGT_TYPE_SHIFT


def pgt_of(type_info: int) -> int:
    """The page type held in a type_info word."""
    return (type_info >> PGT_TYPE_SHIFT) & 7
