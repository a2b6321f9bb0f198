"""Guest consoles: Xen's own console for dom0, the console ring for domUs, port 0xE9 for HVM.

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


def guest_console_write(host, dom, text: str) -> None:
    """Append to a domain's console log; one trace event per complete line.

    The console log keeps the guest's bytes as xenconsoled does; what reaches
    Xen's own log (``xl dmesg``) from a domU is filtered as Xen filters it, so
    a guest cannot print carriage returns or escape codes there, nor lines
    that pass for Xen's own."""
    pending = dom.extra.get("console_partial", "") + text
    lines = pending.split("\n")
    for line in lines[:-1]:
        host.emit(dom.vcpus[0] if dom.vcpus else None, "console", text=line)
        if dom.privileged:
            host.dmesg.append(f"(d{dom.domid}) {line}")     # the hardware domain's bytes go out as they are
        elif dom.is_hvm:
            host.dmesg.append(f"(d{dom.domid}) {printable(line)}")     # as hvm_print_line() passes it
    dom.extra["console_partial"] = lines[-1]
    dom.console_output += text


class ConsoleDaemon:
    """xenconsoled: drains each domU's console ring when its event channel fires."""

    name = "xenconsoled"

    def __init__(self, host) -> None:
        self.host = host
        self.ports: dict[int, int] = {}        # dom0 port -> domid
        self.pending_input: dict[int, bytearray] = {}   # domid -> typed bytes not yet in in[]
        self.pages: dict[int, object] = {}     # domid -> the ring page, held (lab.xen.frames)

    def connect(self, dom) -> int:
        """Give ``dom`` a console channel; return the port for its start_info.

        The ring page is mapped as xenconsoled maps it (a foreign mapping, or the
        console grant): held writable while the domain lives, so it can never be
        freed under the daemon nor become one of the guest's page tables."""
        ev = self.host.evtchn
        guest_port = ev.alloc_unbound(dom.domid, 0)
        local = ev.bind_interdomain(0, dom.domid, guest_port)
        ev.bind_service(0, local, self.notified)
        self.ports[local] = dom.domid
        self.pending_input.pop(dom.domid, None)
        self._release(dom.domid)
        if dom.console_pfn:
            page = self.host.frames.hold_gfn(dom, dom.console_pfn, writable=True,
                                             holder=f"xenconsoled ring of d{dom.domid}")
            if not isinstance(page, int):
                self.pages[dom.domid] = page
        return guest_port

    def _release(self, domid: int) -> None:
        page = self.pages.pop(domid, None)
        if page is not None:
            page.release()

    def _port_of(self, domid: int) -> int | None:
        for port, d in sorted(self.ports.items()):
            if d == domid:
                return port
        return None

    def console_input(self, dom, text: str) -> bool:
        """Type ``text`` into a domU's console: into ``in[]`` as far as it has room (the
        rest waits until the guest has read some), then a notification. False: no ring."""
        port = self._port_of(dom.domid)
        if port is None or not dom.console_pfn or dom.privileged:
            return False
        self.pending_input.setdefault(dom.domid, bytearray()).extend(text.encode("latin-1", "replace"))
        if self._feed(dom):
            self.host.evtchn.send(0, port)
        return True

    def _feed(self, dom) -> int:
        """Move waiting input into the ring; how many bytes went in."""
        waiting = self.pending_input.get(dom.domid)
        page = self.pages.get(dom.domid)
        if not waiting or page is None:
            return 0
        cons = page.read_u32(IN_CONS)
        prod = page.read_u32(IN_PROD)
        used = (prod - cons) & 0xFFFFFFFF
        if used > IN_SIZE:
            self.host.log(f"xenconsoled: d{dom.domid} console input indexes are inconsistent; input held back")
            return 0
        n = min(IN_SIZE - used, len(waiting))
        for i in range(n):
            page.write(IN_OFF + ((prod + i) % IN_SIZE), bytes([waiting[i]]))
        del waiting[:n]
        # the bytes first, then the index that publishes them
        page.write_u32(IN_PROD, prod + n)
        if n:
            host = self.host
            d0 = host.domains.get(0)
            v = d0.vcpus[0] if d0 is not None and d0.vcpus else None
            p = v.pcpu if v is not None and v.pcpu is not None else 0
            host.trace.emit(host.clock[p], p, dom.domid, 0, "ring_io", ring="console",
                            op=f"input: {n} byte(s) into in[]", req_prod=(prod + n) & 0xFFFFFFFF, req_cons=cons,
                            notify=True)
        return n

    def notified(self, port: int) -> int:
        domid = self.ports.get(port)
        dom = self.host.domains.get(domid)
        page = self.pages.get(domid) if domid is not None else None
        if dom is None or page is None:
            return 50
        if self.pending_input.get(domid) and self._feed(dom):
            self.host.evtchn.send(0, port)         # the guest made room: the rest of what was typed
        cons = page.read_u32(OUT_CONS)
        prod = page.read_u32(OUT_PROD)
        if (prod - cons) & 0xFFFFFFFF > OUT_SIZE:
            self.host.log(f"xenconsoled: d{domid} console ring indexes are inconsistent; ignoring")
            page.write_u32(OUT_CONS, prod)
            return 200
        out = bytearray()
        while cons != prod:
            out.append(page.read(OUT_OFF + (cons % OUT_SIZE), 1)[0])
            cons = (cons + 1) & 0xFFFFFFFF
        page.write_u32(OUT_CONS, cons)
        guest_console_write(self.host, dom, out.decode("latin-1"))
        return 200 + 10 * len(out)

    def domain_shutdown(self, dom) -> None:
        """A stopping domain's last output is still in its ring: drain it now."""
        for port, domid in sorted(self.ports.items()):
            if domid == dom.domid:
                self.notified(port)

    def domain_gone(self, dom) -> None:
        for port, domid in list(self.ports.items()):
            if domid == dom.domid:
                del self.ports[port]
        self.pending_input.pop(dom.domid, None)
        self._release(dom.domid)
