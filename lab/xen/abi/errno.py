"""Errno values: xen/include/public/errno.h. Hypercalls return -value.
"""

from __future__ import annotations

EPERM = 1
ENOENT = 2
ESRCH = 3
EINTR = 4
EIO = 5
ENXIO = 6
E2BIG = 7
EBADF = 9
EAGAIN = 11
ENOMEM = 12
EACCES = 13
EFAULT = 14
EBUSY = 16
EEXIST = 17
ENODEV = 19
EINVAL = 22
ENOSPC = 28
EROFS = 30
ERANGE = 34
EDEADLK = 35
ENOSYS = 38
ENOTEMPTY = 39
ENODATA = 61
ETIME = 62
EOVERFLOW = 75
ERESTART = 85
EMSGSIZE = 90
EOPNOTSUPP = 95
ENOBUFS = 105
EISCONN = 106
ENOTCONN = 107
ETIMEDOUT = 110

#: Every errno name by name, built from the constants above.
ERRNO: dict[str, int] = {name: value for name, value in globals().items()
                         if name.startswith("E") and name.isupper() and isinstance(value, int)}
ERRNO_BY_VALUE: dict[int, str] = {v: k for k, v in ERRNO.items()}


def errno_name(value: int) -> str:
    """``EINVAL`` for 22 or -22; ``errno_NN`` for a value errno.h does not define."""
    v = abs(int(value))
    return ERRNO_BY_VALUE.get(v, f"errno_{v}")
