"""Guest consoles: Xen's own console for dom0, the console ring for domUs, port 0xE9 for HVM.

A domU may not write Xen's console (console_io is refused to it), so its
kernel writes into the console ring page the builder gave it (struct
xencons_interface: ``in[1024]``, ``out[2048]``, then ``in_cons``,
``in_prod``, ``out_cons``, ``out_prod``) and notifies an event channel. The
other end of that channel is xenconsoled in dom0, which drains the ring into
the domain's console log, the text ``xl console`` shows.
"""

from __future__ import annotations

OUT_OFF, OUT_SIZE = 1024, 2048
IN_CONS, IN_PROD, OUT_CONS, OUT_PROD = 3072, 3076, 3080, 3084


def guest_console_write(host, dom, text: str) -> None:
    """Append to a domain's console log; one trace event per complete line."""
    pending = dom.extra.get("console_partial", "") + text
    lines = pending.split("\n")
    for line in lines[:-1]:
        host.emit(dom.vcpus[0] if dom.vcpus else None, "console", text=line)
        if dom.privileged or dom.is_hvm:
            host.dmesg.append(f"(d{dom.domid}) {line}")     # as Xen prints guest debug output
    dom.extra["console_partial"] = lines[-1]
    dom.console_output += text


class ConsoleDaemon:
    """xenconsoled: drains each domU's console ring when its event channel fires."""

    name = "xenconsoled"

    def __init__(self, host) -> None:
        self.host = host
        self.ports: dict[int, int] = {}        # dom0 port -> domid

    def connect(self, dom) -> int:
        """Give ``dom`` a console channel; return the port for its start_info."""
        ev = self.host.evtchn
        guest_port = ev.alloc_unbound(dom.domid, 0)
        local = ev.bind_interdomain(0, dom.domid, guest_port)
        ev.bind_service(0, local, self.notified)
        self.ports[local] = dom.domid
        return guest_port

    def notified(self, port: int) -> int:
        domid = self.ports.get(port)
        dom = self.host.domains.get(domid)
        if dom is None or not dom.console_pfn:
            return 50
        base = dom.p2m[dom.console_pfn] << 12
        mem = self.host.mem
        cons = int.from_bytes(mem.read(base + OUT_CONS, 4), "little")
        prod = int.from_bytes(mem.read(base + OUT_PROD, 4), "little")
        if (prod - cons) & 0xFFFFFFFF > OUT_SIZE:
            self.host.log(f"xenconsoled: d{domid} console ring indexes are inconsistent; ignoring")
            mem.write(base + OUT_CONS, prod.to_bytes(4, "little"))
            return 200
        out = bytearray()
        while cons != prod:
            out.append(mem.read(base + OUT_OFF + (cons % OUT_SIZE), 1)[0])
            cons = (cons + 1) & 0xFFFFFFFF
        mem.write(base + OUT_CONS, cons.to_bytes(4, "little"))
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
