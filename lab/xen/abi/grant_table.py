"""Grant tables: xen/include/public/grant_table.h.
"""

from __future__ import annotations

from lab.xen.abi._layout import Layout
from lab.xen.abi._names import collect

GNTTABOP_map_grant_ref = 0
GNTTABOP_unmap_grant_ref = 1
GNTTABOP_setup_table = 2
GNTTABOP_dump_table = 3
GNTTABOP_transfer = 4
GNTTABOP_copy = 5
GNTTABOP_query_size = 6
GNTTABOP_unmap_and_replace = 7
GNTTABOP_set_version = 8
GNTTABOP_get_status_frames = 9
GNTTABOP_get_version = 10
GNTTABOP_swap_grant_ref = 11
GNTTABOP_cache_flush = 12
GNTTABOP_NAMES: dict[int, str] = collect(globals(), "GNTTABOP_", strip=True)

#: The argument structure of each sub-op the lab implements (domid_t u16, grant_ref_t u32,
#: grant_handle_t u32, a guest handle 8 bytes).
GNTTABOP_LAYOUTS: dict[int, Layout] = {
    GNTTABOP_map_grant_ref: Layout("gnttab_map_grant_ref", 32, {
        "host_addr": (0, 8), "flags": (8, 4), "ref": (12, 4), "dom": (16, 2), "status": (18, 2),
        "handle": (20, 4), "dev_bus_addr": (24, 8)}),
    GNTTABOP_unmap_grant_ref: Layout("gnttab_unmap_grant_ref", 24, {
        "host_addr": (0, 8), "dev_bus_addr": (8, 8), "handle": (16, 4), "status": (20, 2)}),
    GNTTABOP_setup_table: Layout("gnttab_setup_table", 24, {
        "dom": (0, 2), "nr_frames": (4, 4), "status": (8, 2), "frame_list": (16, 8)}),
    # source and dest are struct gnttab_copy_ptr {union {ref, gmfn} u; domid_t domid; u16 offset}
    GNTTABOP_copy: Layout("gnttab_copy", 40, {
        "source.u": (0, 8), "source.domid": (8, 2), "source.offset": (10, 2),
        "dest.u": (16, 8), "dest.domid": (24, 2), "dest.offset": (26, 2),
        "len": (32, 2), "flags": (34, 2), "status": (36, 2)}),
    GNTTABOP_query_size: Layout("gnttab_query_size", 16, {
        "dom": (0, 2), "nr_frames": (4, 4), "max_nr_frames": (8, 4), "status": (12, 2)}),
}

#: grant_table_op sub-ops an HVM guest may use; the rest return -ENOSYS
#: (xen/arch/x86/hvm/hypercall.c, hvm_grant_table_op).
HVM_ALLOWED_GNTTABOP = frozenset((
    GNTTABOP_query_size, GNTTABOP_setup_table, GNTTABOP_set_version, GNTTABOP_get_version,
    GNTTABOP_copy, GNTTABOP_map_grant_ref, GNTTABOP_unmap_grant_ref, GNTTABOP_swap_grant_ref,
))

#: Grant-table frames every domain has from its creation (xen/arch/x86/include/asm/grant_table.h;
#: grant_table_init() grows the table to it with gnttab_grow_table(d, 0)).
INITIAL_NR_GRANT_FRAMES = 1
#: The default of a domain's max_grant_frames (common/grant_table.c opt_max_grant_frames,
#: the gnttab_max_frames command-line option).
DEFAULT_MAX_GRANT_FRAMES = 64

# Grant entry flags.
GTF_invalid = 0
GTF_permit_access = 1
GTF_accept_transfer = 2
GTF_transitive = 3
GTF_type_mask = 3
GTF_readonly = 1 << 2
GTF_reading = 1 << 3
GTF_writing = 1 << 4
GTF_PWT = 1 << 5
GTF_PCD = 1 << 6
GTF_PAT = 1 << 7
GTF_sub_page = 1 << 8
GTF_transfer_committed = 1 << 2
GTF_transfer_completed = 1 << 3

# Mapping flags.
GNTMAP_device_map = 1 << 0
GNTMAP_host_map = 1 << 1
GNTMAP_readonly = 1 << 2
GNTMAP_application_map = 1 << 3
GNTMAP_contains_pte = 1 << 4

# gnttab_copy flags.
GNTCOPY_source_gref = 1 << 0
GNTCOPY_dest_gref = 1 << 1

# Per-op status codes.
GNTST_okay = 0
GNTST_general_error = -1
GNTST_bad_domain = -2
GNTST_bad_gntref = -3
GNTST_bad_handle = -4
GNTST_bad_virt_addr = -5
GNTST_bad_dev_addr = -6
GNTST_no_device_space = -7
GNTST_permission_denied = -8
GNTST_bad_page = -9
GNTST_bad_copy_arg = -10
GNTST_address_too_big = -11
GNTST_eagain = -12
GNTST_no_space = -13
GNTST_NAMES: dict[int, str] = collect(globals(), "GNTST_")
#: GNTTABOP_error_msgs, indexed by -status.
GNTTABOP_ERROR_MSGS: tuple[str, ...] = (
    "okay", "undefined error", "unrecognised domain id", "invalid grant reference",
    "invalid mapping handle", "invalid virtual address", "invalid device address",
    "no spare translation slot in the I/O MMU", "permission denied", "bad page",
    "copy arguments cross page boundary", "page address size too large",
    "operation not done; try again", "out of space",
)


def gntst_name(status: int) -> str:
    """``GNTST_bad_gntref`` for -3; ``GNTST_unknown_N`` otherwise."""
    return GNTST_NAMES.get(status, f"GNTST_unknown_{status}")


def gntst_message(status: int) -> str:
    if -len(GNTTABOP_ERROR_MSGS) < status <= 0:
        return GNTTABOP_ERROR_MSGS[-status]
    return "bad status"


GRANT_ENTRY_V1_SIZE = 8                      # u16 flags; u16 domid; u32 frame
GRANT_ENTRIES_V1_PER_PAGE = 4096 // GRANT_ENTRY_V1_SIZE
GNTTAB_NR_RESERVED_ENTRIES = 8
GNTTAB_RESERVED_CONSOLE = 0
GNTTAB_RESERVED_XENSTORE = 1
#: The first grant reference a guest may hand out (lab name; = GNTTAB_NR_RESERVED_ENTRIES).
GNTTAB_FIRST_FREE_REF = GNTTAB_NR_RESERVED_ENTRIES
