"""The guest network stack (net.s) over the emulated NE2000 (ne2000.s) and the PV frontend (netfront.s).

Guests run the guest shell (shell.s) and are typed at: ``ping 0`` pings dom0's
bridge (10.0.0.1), and the frames are checked on the wire (the NIC's and the
bridge's view) against Ethernet, ARP, IPv4 and ICMP as the RFCs lay them out.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from lab.dom0.bridge import inet_checksum as csum
from lab.paths import KERNELS
from xen_helpers import events, small_host, write_cfg

pytestmark = pytest.mark.machine       # every test here boots a whole machine

PROMPT = "guest# "
DOM0_MAC = bytes.fromhex("00163e000001")
HVM_MAC, PV_MAC = "00:16:3e:00:00:21", "00:16:3e:00:00:31"


# ------------------------------------------------------------------ guests running the shell
def net_host(**kw):
    """dom0 with xenbr0, netback and blkback running (every host the lab boots has them)."""
    host, xl = small_host(**kw)
    assert host.services.bridge is not None and {"netback", "blkback"} <= set(host.services.backends)
    return host, xl


def shell_guest(xl, directory: Path, name: str, type_: str, mac: str | None = None, disk: bool = False, **keys):
    flavour = {"pv": "pv.s", "pv32": "pv32.s", "hvm": "hvm.s", "pvh": "pvh.s",
               "hvm-pvdrivers": "hvm_pvdrivers.s", "pvhvm": "pvhvm.s"}[type_]
    if type_ == "pv32":
        keys["lab_pv32"] = 1
    type_ = {"hvm-pvdrivers": "hvm", "pvhvm": "hvm", "pv32": "pv"}.get(type_, type_)
    if mac is not None:
        spec = f"mac={mac}"
        if type_ == "hvm":
            spec = f"model=ne2k_pci, type=ioemu, {spec}"
        keys["vif"] = [spec]
    if disk:
        keys["disk"] = [f"format=raw, vdev={'hda' if type_ == 'hvm' else 'xvda'}, access=rw, "
                        f"target={Path(directory) / (name + '.img')}"]
    if type_ == "hvm":
        keys.setdefault("hap", 1)
    keys["extra"] = "shell"                      # the stock kernel, started into its shell
    cfg = write_cfg(directory, name, type_, kernel=str(KERNELS / flavour), **keys)
    return xl.create(cfg)


def wait_prompt(host, dom, since: int = 0, budget: int = 4_000_000) -> str:
    """Run until ``dom`` prints its prompt again after ``since`` characters of output; the new output."""
    def done() -> bool:
        out = dom.console_output
        return len(out) > since and out.endswith(PROMPT) and PROMPT in out[since:]
    host.run(budget, stop=done)
    assert done(), f"no prompt from {dom.name}; console:\n{dom.console_output[-600:]}"
    return dom.console_output[since:]


def type_line(host, dom, line: str) -> None:
    """Type a line at the guest's console: its serial port (HVM) or its console ring (PV, PVH)."""
    dm = host.services.device_model
    if dm.wants(dom):
        assert dm.console_input(dom, line + "\n")
    else:
        assert host.services.xenconsoled.console_input(dom, line + "\n")


def command(host, dom, line: str, budget: int = 4_000_000) -> str:
    """Type ``line`` and run until the next prompt; what the guest answered (without the echo)."""
    start = len(dom.console_output)
    type_line(host, dom, line)
    out = wait_prompt(host, dom, start + len(line), budget)
    out = dom.console_output[start:]
    assert out.startswith(line + "\n"), out
    return out[len(line) + 1:-len(PROMPT)]


# ------------------------------------------------------------------ reference decoding (RFC 826, 791, 792)
def ip4(text: str) -> bytes:
    return bytes(int(p) for p in text.split("."))


def parse(frame: bytes) -> dict:
    """Ethernet II, then ARP or IPv4/ICMP, with every checksum verified."""
    f = {"dst": frame[0:6], "src": frame[6:12], "type": struct.unpack(">H", frame[12:14])[0]}
    if f["type"] == 0x0806:
        htype, ptype, hlen, plen, op = struct.unpack(">HHBBH", frame[14:22])
        assert (htype, ptype, hlen, plen) == (1, 0x0800, 6, 4)
        f.update(op=op, sha=frame[22:28], spa=frame[28:32], tha=frame[32:38], tpa=frame[38:42])
    elif f["type"] == 0x0800:
        ip = frame[14:]
        assert ip[0] == 0x45 and csum(ip[:20]) == 0, "IPv4 header or its checksum"
        total = struct.unpack(">H", ip[2:4])[0]
        assert 28 <= total <= len(ip)
        icmp = ip[20:total]
        assert ip[9] == 1 and csum(icmp) == 0, "ICMP checksum"
        f.update(ttl=ip[8], src_ip=ip[12:16], dst_ip=ip[16:20], icmp_type=icmp[0], icmp_code=icmp[1],
                 ident=icmp[4:6], seq=struct.unpack(">H", icmp[6:8])[0], data=icmp[8:])
    return f


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


# ------------------------------------------------------------------ tests
def test_hvm_guest_pings_dom0_through_the_emulated_ne2000(tmp_path):
    host, xl = net_host()
    dom = shell_guest(xl, tmp_path, "h1", "hvm", mac=HVM_MAC)
    boot = wait_prompt(host, dom)
    # no xenstore in a plain HVM kernel: its domain id comes from Xen's CPUID leaf 0x40000004
    hvm_ip = f"10.0.0.{10 + dom.domid}"
    assert f"net: card up, MAC {HVM_MAC}, IP {hvm_ip}" in boot
    nic = host.services.device_model.nic(dom)
    exits_before = len(events(host, "ioreq", dom.domid, state="STATE_IOREQ_READY"))
    out = command(host, dom, "ping 0")
    assert out == "ping 10.0.0.1: echo reply from 00:16:3e:00:00:01 seq 1\n"
    # on the wire: an ARP request for dom0's address, then one echo request, both from the card's MAC
    sent = [parse(f) for f in nic.sent]
    assert [(f["type"], f.get("op"), f.get("icmp_type")) for f in sent] == [(0x0806, 1, None), (0x0800, None, 8)]
    arp, echo = sent
    assert arp["dst"] == b"\xff" * 6 and arp["src"] == arp["sha"] == mac(HVM_MAC)
    assert arp["spa"] == ip4(hvm_ip) and arp["tpa"] == ip4("10.0.0.1")
    assert echo["dst"] == DOM0_MAC and echo["src_ip"] == ip4(hvm_ip) and echo["dst_ip"] == ip4("10.0.0.1")
    assert echo["seq"] == 1 and echo["ttl"] == 64 and echo["data"] == bytes(range(56))
    assert all(len(f) >= 60 for f in nic.sent)                           # padded to Ethernet's minimum
    # what came back into the card: dom0's ARP reply and its echo reply with the same id and data
    got = [parse(f) for f in nic.received]
    assert got[0]["type"] == 0x0806 and got[0]["op"] == 2 and got[0]["sha"] == DOM0_MAC
    assert got[1]["icmp_type"] == 0 and got[1]["ident"] == echo["ident"] and got[1]["data"] == echo["data"]
    # every byte went through port I/O: VM exits and ioreqs to QEMU in dom0
    ioreqs = len(events(host, "ioreq", dom.domid, state="STATE_IOREQ_READY")) - exits_before
    assert ioreqs > (60 + 98) // 2                                       # at least a word per 2 bytes sent
    # a second ping reuses the ARP entry: one more frame, no more ARP
    assert command(host, dom, "ping 10.0.0.1") == "ping 10.0.0.1: echo reply from 00:16:3e:00:00:01 seq 2\n"
    assert [parse(f)["type"] for f in nic.sent[2:]] == [0x0800]


def test_pv_guest_pings_dom0_through_netfront(tmp_path):
    host, xl = net_host()
    dom = shell_guest(xl, tmp_path, "p1", "pv", mac=PV_MAC)
    boot = wait_prompt(host, dom)
    assert "netfront: connected to the backend" in boot
    assert f"net: card up, MAC {PV_MAC}, IP 10.0.0.{10 + dom.domid}" in boot   # domid from xenstore
    xs = host.services.xenstored
    fe, be = f"/local/domain/{dom.domid}/device/vif/0", f"/local/domain/0/backend/vif/{dom.domid}/0"
    assert xs.dom0_request("READ", f"{fe}/state") == "4" and xs.dom0_request("READ", f"{be}/state") == "4"
    assert xs.dom0_request("READ", f"{fe}/request-rx-copy") == "1"
    refs = [int(xs.dom0_request("READ", f"{fe}/{k}")) for k in ("tx-ring-ref", "rx-ring-ref")]
    assert len(set(refs)) == 2 and min(refs) >= 8                          # grant refs 0-7 are reserved
    assert int(xs.dom0_request("READ", f"{fe}/event-channel")) > 0
    out = command(host, dom, "ping 0")
    assert out == "ping 10.0.0.1: echo reply from 00:16:3e:00:00:01 seq 1\n"
    bridge = host.services.bridge
    seen = [parse(f) for f in bridge.local_received]
    assert [(f["type"], f.get("op"), f.get("icmp_type")) for f in seen] == [(0x0806, 1, None), (0x0800, None, 8)]
    assert all(f["src"] == mac(PV_MAC) for f in seen)
    assert seen[1]["src_ip"] == ip4(f"10.0.0.{10 + dom.domid}")
    vif = host.services.backends["netback"].devices[(dom.domid, 0)].data["vif"]
    assert vif.stats["tx_packets"] == 2 and vif.stats["rx_packets"] == 2 and vif.stats["tx_errors"] == 0
    # no emulation at all: grant copies by dom0, no ioreq
    assert not events(host, "ioreq", dom.domid)
    copies = [e for e in host.trace.iter_all() if e.kind == "grant" and e.get("op") == "copy"]
    assert len(copies) == 4 and all(e.get("status") in (0, "GNTST_okay", "okay") for e in copies)
    # a ping nobody answers: ARP goes unanswered and ping says so
    out = command(host, dom, "ping 7", budget=20_000_000)
    assert out == "ping 10.0.0.17: no reply, errno 110\n"


def test_pv_guest_pings_an_hvm_guest(tmp_path):
    host, xl = net_host()
    hvm = shell_guest(xl, tmp_path, "h1", "hvm", mac=HVM_MAC)
    wait_prompt(host, hvm)
    pv = shell_guest(xl, tmp_path, "p1", "pv", mac=PV_MAC)
    wait_prompt(host, pv)
    hvm_ip = f"10.0.0.{10 + hvm.domid}"
    out = command(host, pv, f"ping {hvm.domid}")              # ping DOMID: 10.0.0.(10+DOMID)
    assert out == f"ping {hvm_ip}: echo reply from {HVM_MAC} seq 1\n"
    # the HVM guest's kernel answered ARP and the echo request from its shell's idle loop
    replies = [parse(f) for f in host.services.device_model.nic(hvm).sent]
    assert [(f["type"], f.get("op"), f.get("icmp_type")) for f in replies] == [(0x0806, 2, None),
                                                                                (0x0800, None, 0)]
    arp, echo = replies
    assert arp["dst"] == mac(PV_MAC) and arp["sha"] == mac(HVM_MAC) and arp["tha"] == mac(PV_MAC)
    assert arp["spa"] == ip4(hvm_ip) and arp["tpa"] == ip4(f"10.0.0.{10 + pv.domid}")
    assert echo["dst"] == mac(PV_MAC) and echo["dst_ip"] == ip4(f"10.0.0.{10 + pv.domid}")
    assert echo["seq"] == 1 and echo["data"] == bytes(range(56))
    stats = command(host, hvm, "stats")
    assert "echo replies 1" in stats


def test_guest_answers_echo_requests_and_drops_damaged_ones(tmp_path):
    host, xl = net_host()
    dom = shell_guest(xl, tmp_path, "h1", "hvm", mac=HVM_MAC)
    wait_prompt(host, dom)
    bridge = host.services.bridge
    nic = host.services.device_model.nic(dom)

    def echo_request(seq: int, damage: str = "") -> bytes:
        body = bytearray(b"\x08\x00\x00\x00\x12\x34" + struct.pack(">H", seq) + b"lab payload")
        body[2:4] = struct.pack(">H", csum(bytes(body)))
        if damage == "icmp":
            body[-1] ^= 1
        hdr = bytearray(struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 7, 0, 64, 1, 0,
                                    ip4("10.0.0.1"), ip4(f"10.0.0.{10 + dom.domid}")))
        hdr[10:12] = struct.pack(">H", csum(bytes(hdr)))
        if damage == "ip":
            hdr[10] ^= 0x40
        if damage == "dst":
            hdr[16:20] = ip4("10.0.0.3")
            hdr[10:12] = b"\0\0"
            hdr[10:12] = struct.pack(">H", csum(bytes(hdr)))
        return mac(HVM_MAC) + DOM0_MAC + b"\x08\x00" + bytes(hdr) + bytes(body)

    for seq, damage in ((1, "ip"), (2, "icmp"), (3, "dst"), (4, "")):
        bridge.dom0_send(echo_request(seq, damage))
    host.run(400_000, stop=lambda: len(nic.sent) >= 1)
    host.run(100_000)
    answers = [parse(f) for f in nic.sent]
    assert [(f["icmp_type"], f["seq"]) for f in answers] == [(0, 4)]    # only the intact one, for us
    assert answers[0]["dst"] == DOM0_MAC and answers[0]["dst_ip"] == ip4("10.0.0.1")
    assert answers[0]["data"] == b"lab payload" and answers[0]["ident"] == b"\x12\x34"
    assert any(parse(f).get("icmp_type") == 0 for f in bridge.local_received)


@pytest.mark.parametrize("mode", ["hvm-pvdrivers", "pvhvm"])
def test_hvm_guest_with_pv_drivers_uses_netfront_after_the_unplug(tmp_path, mode):
    host, xl = net_host()
    dom = shell_guest(xl, tmp_path, "hp", mode, mac=HVM_MAC)
    boot = wait_prompt(host, dom)
    assert "platform: unplugged emulated disks and NICs" in boot
    assert "netfront: connected to the backend" in boot
    assert f"net: card up, MAC {HVM_MAC}, IP 10.0.0.{10 + dom.domid}" in boot  # xenstore reachable: its domid
    mark = len(host.trace)
    assert command(host, dom, "ping 0") == "ping 10.0.0.1: echo reply from 00:16:3e:00:00:01 seq 1\n"
    # the emulated card is gone: the frames went through the rings, not through port I/O to QEMU
    nic = host.services.device_model.nic(dom)
    assert not nic.present and nic.sent == []
    nic_ports = range(0xC100, 0xC200)
    assert not [e for e in host.trace.since(mark) if e.kind == "ioreq" and e.get("port") in nic_ports]
    vif = host.services.backends["netback"].devices[(dom.domid, 0)].data["vif"]
    assert vif.stats["tx_packets"] == 2 and vif.stats["rx_packets"] == 2


def test_32bit_pv_guest_pings_dom0_through_netfront(tmp_path):
    host, xl = net_host()
    dom = shell_guest(xl, tmp_path, "p32", "pv32", mac="00:16:3e:00:00:51")
    boot = wait_prompt(host, dom)
    assert "kernel in ring 1" in boot and "netfront: connected to the backend" in boot
    assert command(host, dom, "ping 0") == "ping 10.0.0.1: echo reply from 00:16:3e:00:00:01 seq 1\n"
    assert host.services.backends["netback"].devices[(dom.domid, 0)].data["vif"].stats["tx_packets"] == 2
