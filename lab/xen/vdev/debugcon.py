"""The HVM debug console port 0xE9: hvm_print_line() in arch/x86/hvm/hvm.c.

``hvm_domain_initialise()`` registers XEN_HVM_DEBUGCONS_IOPORT (0xe9) for
every HVM and PVH domain. A byte written there is a character of the guest's
console line, which Xen logs once the line ends (non-printable characters
dropped); a read gives 0xE9, the Bochs "port E9 hack" answer.
"""

from __future__ import annotations

from ..console import guest_console_write

XEN_HVM_DEBUGCONS_IOPORT = 0xE9


class DebugConsolePort:
    name = "debug port (in Xen: hvm_print_line)"

    def port_read(self, host, v, port: int, size: int) -> int | None:
        return XEN_HVM_DEBUGCONS_IOPORT

    def port_write(self, host, v, port: int, size: int, value: int) -> bool:
        guest_console_write(host, v.domain, chr(value & 0xFF))
        return True
