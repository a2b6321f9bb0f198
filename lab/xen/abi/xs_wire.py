"""The XenStore wire protocol (public/io/xs_wire.h) and XenBus states (public/io/xenbus.h).
"""

from __future__ import annotations

from enum import IntEnum

from lab.xen.abi._names import collect

XS_CONTROL = 0
XS_DEBUG = XS_CONTROL
XS_DIRECTORY = 1
XS_READ = 2
XS_GET_PERMS = 3
XS_WATCH = 4
XS_UNWATCH = 5
XS_TRANSACTION_START = 6
XS_TRANSACTION_END = 7
XS_INTRODUCE = 8
XS_RELEASE = 9
XS_GET_DOMAIN_PATH = 10
XS_WRITE = 11
XS_MKDIR = 12
XS_RM = 13
XS_SET_PERMS = 14
XS_WATCH_EVENT = 15
XS_ERROR = 16
XS_IS_DOMAIN_INTRODUCED = 17
XS_RESUME = 18
XS_SET_TARGET = 19
# 20 was XS_RESTRICT, removed; the enum skips it.
XS_RESET_WATCHES = 21
XS_DIRECTORY_PART = 22
XS_GET_FEATURE = 23
XS_SET_FEATURE = 24
XS_GET_QUOTA = 25
XS_SET_QUOTA = 26
XS_TYPE_COUNT = 27
XS_INVALID = 0xFFFF
XS_NAMES: dict[int, str] = collect(globals(), "XS_", exclude=("XS_DEBUG", "XS_TYPE_COUNT", "XS_INVALID"))
XS_BY_NAME: dict[str, int] = {v: k for k, v in XS_NAMES.items()}
XS_WATCH_PATH = 0
XS_WATCH_TOKEN = 1
XS_HEADER_SIZE = 16                  # u32 type, req_id, tx_id, len
XENSTORE_RING_SIZE = 1024
XENSTORE_PAYLOAD_MAX = 4096
XENSTORE_ABS_PATH_MAX = 3072
XENSTORE_REL_PATH_MAX = 2048


class XenbusState(IntEnum):
    """enum xenbus_state, with Xen's member names."""
    XenbusStateUnknown = 0
    XenbusStateInitialising = 1
    XenbusStateInitWait = 2
    XenbusStateInitialised = 3
    XenbusStateConnected = 4
    XenbusStateClosing = 5
    XenbusStateClosed = 6
    XenbusStateReconfiguring = 7
    XenbusStateReconfigured = 8

    @property
    def short(self) -> str:
        """``Connected`` for XenbusStateConnected."""
        return self.name[len("XenbusState"):]


# The enum's members as module names, as C code spells them.
XenbusStateUnknown = XenbusState.XenbusStateUnknown
XenbusStateInitialising = XenbusState.XenbusStateInitialising
XenbusStateInitWait = XenbusState.XenbusStateInitWait
XenbusStateInitialised = XenbusState.XenbusStateInitialised
XenbusStateConnected = XenbusState.XenbusStateConnected
XenbusStateClosing = XenbusState.XenbusStateClosing
XenbusStateClosed = XenbusState.XenbusStateClosed
XenbusStateReconfiguring = XenbusState.XenbusStateReconfiguring
XenbusStateReconfigured = XenbusState.XenbusStateReconfigured
