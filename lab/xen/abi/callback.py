"""callback_op: public/callback.h.
"""

from __future__ import annotations

CALLBACKTYPE_event = 0
CALLBACKTYPE_failsafe = 1
CALLBACKTYPE_syscall = 2
CALLBACKTYPE_sysenter_deprecated = 3
CALLBACKTYPE_nmi = 4
CALLBACKTYPE_sysenter = 5
CALLBACKTYPE_syscall32 = 7
CALLBACKOP_register = 0
CALLBACKOP_unregister = 1
CALLBACKF_mask_events = 1 << 0
