"""Guest consoles, Xen's side: Xen's own console for dom0 (console_io,
xen/drivers/char/console.c), port 0xE9 for HVM, and the layout of the console
ring a domU writes (xenconsoled, which drains it, is dom0's: ``lab.dom0.xenconsoled``).

A domU may not write Xen's console (console_io is refused to it), so its
kernel writes into the console ring page the builder gave it (struct
xencons_interface: ``in[1024]``, ``out[2048]``, then ``in_cons``,
``in_prod``, ``out_cons``, ``out_prod``) and notifies an event channel. The
other end of that channel is xenconsoled in dom0, which drains the ring into
the domain's console log, the text ``xl console`` shows. Typed input goes the
other way: xenconsoled copies it into ``in[]``, advances ``in_prod`` and
notifies the same channel; the guest consumes it and advances ``in_cons``.
"""

from __future__ import annotations

from . import abi
from .hypercall_table import ARM_HYPERCALLS, X86_HYPERCALLS

E = abi.ERRNO

IN_OFF, IN_SIZE = 0, 1024
OUT_OFF, OUT_SIZE = 1024, 2048
IN_CONS, IN_PROD, OUT_CONS, OUT_PROD = 3072, 3076, 3080, 3084


def is_console_printable(c: str) -> bool:
    """xen/include/xen/console.h: isprint() (Xen's ctype: 0x20-0x7e and 0xa0-0xff), newline, tab."""
    o = ord(c)
    return 0x20 <= o <= 0x7E or 0xA0 <= o <= 0xFF or c in "\n\t"


def printable(text: str) -> str:
    """Guest text as Xen lets it into its own console: non-printable characters dropped
    (hvm_print_line, and do_console_io's "Strip non-printable characters" for a domU)."""
    return "".join(c for c in text if is_console_printable(c))


def displayable(line: str) -> str:
    """A console line safe to put on a terminal: control characters shown as ``\\xNN``
    (nothing a guest prints is interpreted, so it cannot move the cursor or fake a header)."""
    return "".join(c if is_console_printable(c) or ord(c) > 0xFF else f"\\x{ord(c):02x}" for c in line)


#: Characters of one line Xen holds for a domain: struct domain_console's ``buf[256]`` less its
#: NUL (xen/include/xen/sched.h). hvm_print_line() (xen/arch/x86/hvm/hvm.c) and
#: guest_console_write() (xen/drivers/char/console.c) print what they hold when it is full.
CONSOLE_LINE_MAX = 255


def _cut(line: str) -> list[str]:
    """A line as Xen prints it: pieces of CONSOLE_LINE_MAX, each printed when the buffer
    filled, then the rest at the newline (empty if the buffer had just been flushed)."""
    if len(line) < CONSOLE_LINE_MAX:
        return [line]
    full = len(line) // CONSOLE_LINE_MAX * CONSOLE_LINE_MAX
    return [line[i:i + CONSOLE_LINE_MAX] for i in range(0, full, CONSOLE_LINE_MAX)] + [line[full:]]


def guest_console_write(host, dom, text: str) -> None:
    """Append to a domain's console log; one trace event per complete line.

    The console log keeps the guest's bytes as xenconsoled does, its newest
    ``XENCONSOLE_LIMIT`` of them (``Domain.console_log``); what reaches
    Xen's own log (``xl dmesg``) from a domU is filtered as Xen filters it, so
    a guest cannot print carriage returns or escape codes there, nor lines
    that pass for Xen's own. A line is held until its newline or until it fills
    Xen's per-domain buffer (CONSOLE_LINE_MAX), then printed, as Xen prints it:
    a guest that never writes a newline holds at most that much here. (The lab
    counts every character the guest wrote; Xen's buffer holds only those it
    prints, so a line with characters Xen drops is cut a little later there.)"""
    lines = (dom.extra.get("console_partial", "") + text).split("\n")
    *filled, rest = _cut(lines.pop())           # the unfinished line: its full buffers go out now
    for line in [piece for line in lines for piece in _cut(line)] + filled:
        host.emit(dom.vcpus[0] if dom.vcpus else None, "console", text=line)
        if dom.privileged:
            host.dmesg.append(f"(d{dom.domid}) {line}")     # the hardware domain's bytes go out as they are
        elif dom.is_hvm:
            host.dmesg.append(f"(d{dom.domid}) {printable(line)}")     # as hvm_print_line() passes it
    dom.extra["console_partial"] = rest
    dom.console_log.append(text)


@X86_HYPERCALLS.handler("console_io", nargs=3)
@ARM_HYPERCALLS.handler("console_io", nargs=3)
def console_io(host, v, args, info) -> int:
    """do_console_io(): write to Xen's console, or read what was typed at it. A domU is refused,
    as a non-debug Xen refuses it. Common code: the handler is in both architectures' tables."""
    cmd, count, va = args[0], args[1] & 0xFFFFFFFF, args[2]
    copy_from_guest, copy_to_guest = host.hypercalls.copy_from_guest, host.hypercalls.copy_to_guest
    info["args"] = ["CONSOLEIO_write" if cmd == abi.CONSOLEIO_write else "CONSOLEIO_read", count]
    if not v.domain.privileged:
        return -E["EPERM"]
    if cmd == abi.CONSOLEIO_write:
        text = copy_from_guest(host, v, va, min(count, 4096)).decode("latin-1")
        guest_console_write(host, v.domain, text)
        return 0
    if cmd == abi.CONSOLEIO_read:
        # do_console_io(): up to ``count`` bytes of what was typed at Xen's console; the count read
        data = bytes(host.console_input[:count])
        del host.console_input[:len(data)]
        copy_to_guest(host, v, va, data)
        return len(data)
    return -E["ENOSYS"]
