"""xenbr0: the Ethernet bridge in dom0 that joins every guest NIC.

On a Xen host the ``vif-bridge`` hotplug script adds each PV NIC's backend
interface (``vif<D>.<N>``) to the bridge named in its config (``xenbr0`` by
default), and QEMU's tap for an emulated NIC (``vif<D>.<N>-emu``) joins it
too. The bridge is a learning switch: it remembers which port each source
MAC address was seen on and sends a frame only there; broadcast, multicast
and unknown destinations are flooded to every other port.

dom0 itself is on the bridge (the bridge's own interface) with IP 10.0.0.1
and MAC 00:16:3e:00:00:01, and its network stack answers ARP requests for
that address and ICMP echo requests sent to it. The lab's convention gives a
guest with domid D the address 10.0.0.(10+D); guests configure that
themselves, the bridge does not care.

Frames are forwarded as dom0 work, in arrival order, one queue for the whole
bridge: a frame handed to :meth:`Bridge.receive` is forwarded when dom0 next
runs, so delivery into guests (through netback's rx ring and an event
channel, or an emulated NIC's interrupt) is deterministic. Each forwarding
decision is a ``ring_io`` event with ``ring`` "xenbr0".

Simplifications: no STP, no VLANs, no ageing of learned addresses; a port's
addresses are forgotten when it leaves the bridge.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Callable

from .xenbus_backend import charge_dom0, ring_event

BRIDGE_NAME = "xenbr0"
LOCAL = BRIDGE_NAME                  # the bridge's own port: dom0's network stack
DOM0_MAC = bytes.fromhex("00163e000001")
DOM0_IP = bytes([10, 0, 0, 1])
BROADCAST = b"\xff" * 6
ETH_P_IP, ETH_P_ARP = 0x0800, 0x0806
ARP_REQUEST, ARP_REPLY = 1, 2
IPPROTO_ICMP = 1
ICMP_ECHOREPLY, ICMP_ECHO = 0, 8
ETH_HLEN = 14
#: Frames forwarded per dom0 work item before the rest wait for the next one.
BATCH = 64
FRAME_COST = 400                     # lab estimate, when the cost table has no "bridge_frame"


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def ip_text(ip: bytes) -> str:
    return ".".join(str(b) for b in ip)


def guest_ip(domid: int) -> bytes:
    """The lab's convention: domain D is 10.0.0.(10+D)."""
    return bytes([10, 0, 0, (10 + domid) & 0xFF])


def inet_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass
class Port:
    name: str
    domid: int
    deliver: Callable[[bytes], Any]
    up: Callable[[], bool]


class Bridge:
    """dom0's learning bridge xenbr0 and dom0's own address on it."""

    name = "bridge"

    def __init__(self, host) -> None:
        self.host = host
        self.ports: dict[str, Port] = {}
        self.fdb: dict[bytes, str] = {DOM0_MAC: LOCAL}
        self.queue: list[tuple[str, bytes]] = []
        self._queued = False
        self.log_lines: list[str] = []
        #: What dom0's stack received (frames addressed to it, or broadcast), for the learner.
        self.local_received: list[bytes] = []
        self.stats = {"forwarded": 0, "flooded": 0, "dropped": 0, "local_in": 0, "local_out": 0}

    @classmethod
    def install(cls, host) -> "Bridge":
        br = cls(host)
        host.services.add(br)
        return br

    def log(self, text: str) -> None:
        line = f"{BRIDGE_NAME}: {text}"
        self.log_lines.append(line)
        dom0 = self.host.domains.get(0)
        if dom0 is not None:
            from ..xen.console import guest_console_write
            guest_console_write(self.host, dom0, line + "\n")

    # -- ports -----------------------------------------------------------------------------
    def attach(self, name: str, domid: int, deliver: Callable[[bytes], Any],
               up: Callable[[], bool] | None = None) -> None:
        """``brctl addif xenbr0 <name>``."""
        if name in self.ports:
            self.detach(name)
        self.ports[name] = Port(name, domid, deliver, up or (lambda: True))
        self.log(f"port {name} entered forwarding state")

    def detach(self, name: str) -> None:
        if self.ports.pop(name, None) is None:
            return
        for mac in [m for m, p in self.fdb.items() if p == name]:
            del self.fdb[mac]
        self.log(f"port {name} left the bridge")

    def attach_nic(self, domid: int, devid: int, nic) -> str:
        """An emulated NIC of the device model joins as ``vif<D>.<N>-emu`` (QEMU's tap)."""
        name = f"vif{domid}.{devid}-emu"
        nic.on_send = lambda frame, name=name: self.receive(name, frame)
        self.attach(name, domid, nic.receive, lambda: bool(nic.present))
        return name

    def domain_shutdown(self, dom) -> None:
        """A shut-down domain's ports stay until it is destroyed."""

    def domain_gone(self, dom) -> None:
        for name in [n for n, p in self.ports.items() if p.domid == dom.domid]:
            self.detach(name)

    # -- frames in ---------------------------------------------------------------------------
    def receive(self, port: str, frame: bytes) -> None:
        """A frame arrives on ``port``; it is forwarded when dom0 next runs."""
        self.queue.append((port, bytes(frame)))
        if not self._queued:
            self._queued = True
            self.host.queue_dom0_work(f"{BRIDGE_NAME}: forward", self._run)

    def dom0_send(self, frame: bytes) -> None:
        """A frame from dom0's own stack (the bridge interface)."""
        self.stats["local_out"] += 1
        self.receive(LOCAL, frame)

    def _run(self) -> int:
        self._queued = False
        batch, self.queue = self.queue[:BATCH], self.queue[BATCH:]
        for port, frame in batch:
            try:
                self._forward(port, frame)
            except Exception as e:            # a guest's frame must never take dom0 down
                self.stats["dropped"] += 1
                self.log(f"internal error forwarding a frame from {port}: {type(e).__name__}: {e}")
        if self.queue and not self._queued:
            self._queued = True
            self.host.queue_dom0_work(f"{BRIDGE_NAME}: forward", self._run)
        return 0

    def _event(self, ingress: str, frame: bytes, op: str, egress: list[str]) -> None:
        p = self.ports.get(ingress)
        ring_event(self.host, p.domid if p is not None else 0, ring=BRIDGE_NAME, op=op, ingress=ingress,
                   egress=egress, src=mac_text(frame[6:12]), dst=mac_text(frame[0:6]), length=len(frame))

    def _forward(self, ingress: str, frame: bytes) -> None:
        charge_dom0(self.host, self.host.costs.event.get("bridge_frame", FRAME_COST))
        if len(frame) < ETH_HLEN:
            self.stats["dropped"] += 1
            self._event(ingress, frame, "drop (runt frame)", [])
            return
        dst, src = frame[0:6], frame[6:12]
        if ingress != LOCAL and ingress not in self.ports:
            self.stats["dropped"] += 1
            self._event(ingress, frame, "drop (port left the bridge)", [])
            return
        if ingress != LOCAL and src == DOM0_MAC:
            self.stats["dropped"] += 1
            self.log(f"received packet on {ingress} with own address as source address")
            self._event(ingress, frame, "drop (own address as source)", [])
            return
        if not src[0] & 1 and src != bytes(6):
            self.fdb[src] = ingress                   # learn where the sender is
        if dst[0] & 1:
            out = [n for n, p in self.ports.items() if n != ingress and p.up()]
            local = ingress != LOCAL
            self.stats["flooded"] += 1
            self._event(ingress, frame, "flood (broadcast/multicast)", out + ([LOCAL] if local else []))
        elif dst in self.fdb:
            target = self.fdb[dst]
            if target == ingress:
                self.stats["dropped"] += 1
                self._event(ingress, frame, "drop (destination on the ingress port)", [])
                return
            local = target == LOCAL
            out = [] if local or not self.ports[target].up() else [target]
            self.stats["forwarded"] += 1
            self._event(ingress, frame, "forward", out + ([LOCAL] if local else []))
        else:
            out = [n for n, p in self.ports.items() if n != ingress and p.up()]
            local = False
            self.stats["flooded"] += 1
            self._event(ingress, frame, "flood (unknown destination)", out)
        for name in out:
            self.ports[name].deliver(frame)
        if local:
            self._local(frame)

    # -- dom0's own stack ----------------------------------------------------------------------
    def _local(self, frame: bytes) -> None:
        self.local_received.append(frame)
        self.stats["local_in"] += 1
        reply, bad_header = answer(frame)
        if bad_header:
            self.stats["dropped"] += 1
        if reply is not None:
            self.dom0_send(reply)


def answer(frame: bytes, mac: bytes = DOM0_MAC, ip_addr: bytes = DOM0_IP) -> tuple[bytes | None, bool]:
    """What a host at (``mac``, ``ip_addr``) answers to ``frame``: an ARP reply to a request
    for its address, an ICMP echo reply to a ping of it, else nothing. Returns (reply or
    None, whether the frame was an IPv4 packet with a bad header, which ip_rcv drops)."""
    ethertype = struct.unpack_from("!H", frame, 12)[0] if len(frame) >= ETH_HLEN else None
    if ethertype == ETH_P_ARP:
        return _arp_reply(frame, mac, ip_addr), False
    if ethertype == ETH_P_IP:
        return _echo_reply(frame, mac, ip_addr)
    return None, False


def _arp_reply(frame: bytes, mac: bytes, ip_addr: bytes) -> bytes | None:
    if len(frame) < ETH_HLEN + 28:
        return None
    htype, ptype, hlen, plen, oper = struct.unpack_from("!HHBBH", frame, ETH_HLEN)
    sha, spa = frame[22:28], frame[28:32]
    tpa = frame[38:42]
    if (htype, ptype, hlen, plen, oper) != (1, ETH_P_IP, 6, 4, ARP_REQUEST) or tpa != ip_addr:
        return None
    return (sha + mac + struct.pack("!H", ETH_P_ARP)
            + struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, ARP_REPLY) + mac + ip_addr + sha + spa)


def _echo_reply(frame: bytes, mac: bytes, ip_addr: bytes) -> tuple[bytes | None, bool]:
    ip = frame[ETH_HLEN:]
    if len(ip) < 20 or ip[0] >> 4 != 4:
        return None, False
    ihl = (ip[0] & 15) * 4
    total = struct.unpack_from("!H", ip, 2)[0]
    if ihl < 20 or total < ihl or total > len(ip) or inet_checksum(ip[:ihl]) != 0:
        return None, True                              # ip_rcv drops a bad header silently
    if ip[16:20] != ip_addr or ip[9] != IPPROTO_ICMP:
        return None, False
    flags_frag = struct.unpack_from("!H", ip, 6)[0]
    if flags_frag & 0x3FFF:
        return None, False                             # fragments are not reassembled in the lab
    icmp = ip[ihl:total]
    if len(icmp) < 8 or icmp[0] != ICMP_ECHO or inet_checksum(icmp) != 0:
        return None, False
    body = bytes([ICMP_ECHOREPLY, 0]) + b"\0\0" + icmp[4:]
    body = body[:2] + struct.pack("!H", inet_checksum(body)) + body[4:]
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0x4000, 64, IPPROTO_ICMP, 0,
                                ip_addr, ip[12:16]))
    hdr[10:12] = struct.pack("!H", inet_checksum(bytes(hdr)))
    return frame[6:12] + mac + struct.pack("!H", ETH_P_IP) + bytes(hdr) + body, False
