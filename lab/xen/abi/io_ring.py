"""Shared rings: public/io/ring.h, public/io/blkif.h, public/io/netif.h.
"""

from __future__ import annotations

from lab.hw.memory import PAGE_SIZE
#: req_prod, req_event, rsp_prod, rsp_event (u32 each), padded to 64 bytes.
RING_HEADER_SIZE = 64


def ring_size(entry_size: int, pages: int = 1) -> int:
    """__RING_SIZE: entries that fit after the header, rounded down to a power of 2."""
    n = (pages * PAGE_SIZE - RING_HEADER_SIZE) // entry_size
    if n <= 0:
        return 0
    return 1 << (n.bit_length() - 1)


BLKIF_OP_READ = 0
BLKIF_OP_WRITE = 1
BLKIF_OP_WRITE_BARRIER = 2
BLKIF_OP_FLUSH_DISKCACHE = 3
BLKIF_OP_RESERVED_1 = 4
BLKIF_OP_DISCARD = 5
BLKIF_OP_INDIRECT = 6
BLKIF_OP_NAMES = {0: "BLKIF_OP_READ", 1: "BLKIF_OP_WRITE", 2: "BLKIF_OP_WRITE_BARRIER",
                  3: "BLKIF_OP_FLUSH_DISKCACHE", 4: "BLKIF_OP_RESERVED_1",
                  5: "BLKIF_OP_DISCARD", 6: "BLKIF_OP_INDIRECT"}
BLKIF_MAX_SEGMENTS_PER_REQUEST = 11
BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST = 8
BLKIF_RSP_EOPNOTSUPP = -2
BLKIF_RSP_ERROR = -1
BLKIF_RSP_OKAY = 0
BLKIF_REQUEST_SIZE = 112      # the ring entry (request/response union), x86-64
BLKIF_RING_SIZE = ring_size(BLKIF_REQUEST_SIZE)   # 32 for one page
BLKIF_SECTOR_SIZE = 512
VDISK_CDROM = 0x1
VDISK_REMOVABLE = 0x2
VDISK_READONLY = 0x4

_NETTXF_csum_blank = 0
_NETTXF_data_validated = 1
_NETTXF_more_data = 2
_NETTXF_extra_info = 3
NETTXF_csum_blank = 1 << _NETTXF_csum_blank
NETTXF_data_validated = 1 << _NETTXF_data_validated
NETTXF_more_data = 1 << _NETTXF_more_data
NETTXF_extra_info = 1 << _NETTXF_extra_info
_NETRXF_data_validated = 0
_NETRXF_csum_blank = 1
_NETRXF_more_data = 2
_NETRXF_extra_info = 3
_NETRXF_gso_prefix = 4
NETRXF_data_validated = 1 << _NETRXF_data_validated
NETRXF_csum_blank = 1 << _NETRXF_csum_blank
NETRXF_more_data = 1 << _NETRXF_more_data
NETRXF_extra_info = 1 << _NETRXF_extra_info
NETRXF_gso_prefix = 1 << _NETRXF_gso_prefix
NETIF_RSP_DROPPED = -2
NETIF_RSP_ERROR = -1
NETIF_RSP_OKAY = 0
NETIF_RSP_NULL = 1
XEN_NETIF_NR_SLOTS_MIN = 18
XEN_NETIF_MAX_TX_SIZE = 0xFFFF
NETIF_TX_ENTRY_SIZE = 12      # union of netif_tx_request (12) and netif_tx_response (4)
NETIF_RX_ENTRY_SIZE = 8       # union of netif_rx_request (8) and netif_rx_response (8)
XEN_NETIF_TX_RING_SIZE = ring_size(NETIF_TX_ENTRY_SIZE)   # 256
XEN_NETIF_RX_RING_SIZE = ring_size(NETIF_RX_ENTRY_SIZE)   # 256
