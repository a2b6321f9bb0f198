"""xenconsoled: dom0's console daemon, which drains each domU's console ring.

A domU's kernel writes its output into the console ring page the builder gave
it (struct xencons_interface, public/io/console.h; the layout is in
``lab.xen.console``) and notifies an event channel whose other end is bound
here. The daemon copies the bytes into the domain's console log, the text ``xl
console`` shows, and copies typed input the other way. It holds the ring page
writable while the domain lives (a foreign mapping, as ``xc_map_foreign_range``
gives tools/console/daemon/io.c), so the page can never be freed under it nor
become one of the guest's page tables.
"""

from __future__ import annotations

from ..hw.consolelog import ConsoleLog
from ..xen.console import IN_CONS, IN_OFF, IN_PROD, IN_SIZE, OUT_CONS, OUT_OFF, OUT_PROD, OUT_SIZE, guest_console_write
from ..xen.frames import HeldFrame


class ConsoleDaemon:
    """xenconsoled: drains each domU's console ring when its event channel fires."""

    name = "xenconsoled"

    def __init__(self, host) -> None:
        self.host = host
        self.ports: dict[int, int] = {}        # dom0 port -> domid
        self.pending_input: dict[int, bytearray] = {}   # domid -> typed bytes not yet in in[]
        self.pages: dict[int, HeldFrame] = {}  # domid -> the ring page, held

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

    def output(self, dom) -> str:
        """What the domain wrote to its PV console (hvc0) so far."""
        log = dom.extra.get("pv_console_log")
        return log.text if log is not None else ""

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
        # out[] from cons to prod: one read, or two where it wraps
        n, start = (prod - cons) & 0xFFFFFFFF, cons % OUT_SIZE
        first = min(n, OUT_SIZE - start)
        out = page.read(OUT_OFF + start, first) + page.read(OUT_OFF, n - first)
        cons = prod
        page.write_u32(OUT_CONS, cons)
        text = out.decode("latin-1")
        # the PV console's own log (xl console -t pv), beside the domain's whole console output
        log = dom.extra.get("pv_console_log")
        if log is None:
            log = dom.extra["pv_console_log"] = ConsoleLog()     # bounded as console/limit bounds io.c's buffer
        log.append(text)
        guest_console_write(self.host, dom, text)
        return 200 + 10 * len(out)

    def domain_shutdown(self, dom) -> None:
        """A stopping domain's last output is still in its ring: drain it now."""
        for port, domid in sorted(self.ports.items()):
            if domid == dom.domid:
                self.notified(port)

    def domain_gone(self, dom) -> None:
        # The domain's end went with evtchn_destroy(), leaving dom0's end unbound: the daemon
        # unbinds it, as shutdown_domain() in tools/console/daemon/io.c does, so the port is free
        # again and holds nothing of the dead domain.
        ev = self.host.evtchn
        for port, domid in list(self.ports.items()):
            if domid == dom.domid:
                del self.ports[port]
                if 0 in ev.ports:
                    ev.close(0, port, quiet=True)
        self.pending_input.pop(dom.domid, None)
        self._release(dom.domid)
