"""PV I/O on Arm: the Arm kernel's blkfront and netfront against dom0's blkback and netback.

The guest finds its disk and NIC in xenstore, does the xenbus handshake, grants its rings
and buffers and signals through event channels, as the x86 PV kernels do; dom0's backends
map its grants through Xen's Arm grant path, into dom0's stage 2, and copy with
GNTTABOP_copy. Run headless, checked on the disk image, the guest's memory and the trace.
"""

from __future__ import annotations

import struct

import pytest

from lab.dom0.xenbus_backend import CONNECTED
from lab.errors import UserError
from lab.paths import MACHINES
from lab.session.scenario import boot_host, load_scenario, start_scenario
from lab.session.xlcommand import run_xl
from lab.xen.arm.frames import DOM0_FOREIGN_WINDOW, DOM0_GRANT_WINDOW
from lab.xen.frames import FrameReleased
from test_machine import expected_checksum, workload_sector

ARM = MACHINES / "arm"


@pytest.fixture(scope="module")
def ran():
    """The shipped Arm scenario (a disk and a NIC in its xl.cfg), run until the guest powered off."""
    host, xl = start_scenario(load_scenario(ARM / "arm.toml"))
    host.run(3_000_000)
    return host, xl, list(host.trace.iter_all())


def _guest(host):
    return host.domain_by_name("arm-guest")


def test_the_workload_reads_its_disk_and_pings_dom0_through_the_pv_drivers(ran):
    host, _, _ = ran
    dom = _guest(host)
    out = dom.console_output
    assert dom.state == "shutdown" and dom.shutdown_reason == "poweroff", out
    assert "blkfront: xvda 16384 sectors, connected to the backend over a granted ring" in out
    assert "netfront: vif connected to the backend (rx-copy, two rings)" in out
    assert "workload: disk ok" in out and "workload: ping 10.0.0.1 ok" in out
    assert f"workload: checksum {expected_checksum():#018x}" in out


def test_the_sector_went_to_the_disk_image_and_came_back(ran):
    host, _, _ = ran
    dom = _guest(host)
    vbd = host.services.backends["blkback"].vbd(dom.domid, 51712)
    written = struct.pack("<64Q", *workload_sector())
    assert vbd.image.read(0, 1) == written                     # blkback wrote it to the image
    program = dom.images["program"]
    assert host.read_guest(dom, program.symbols["sector_in"], 512) == written   # and read it back
    assert (vbd.stats["wr_req"], vbd.stats["rd_req"], vbd.stats["wr_sect"], vbd.stats["rd_sect"]) == (1, 1, 1, 1)
    vif = host.services.backends["netback"].vif(dom.domid, 0)
    assert vif.stats["tx_packets"] == 2 and vif.stats["rx_packets"] == 2    # ARP and ICMP, each way


def test_the_handshake_goes_through_xenstore_with_watches(ran):
    host, _, events = ran
    dom = _guest(host)
    mine = [e for e in events if e.kind == "xenstore" and e.dom == dom.domid]
    # the requests as the guest made them (relative paths: under its home), each answered OK
    writes = [(e.data["path"], e.data["value"]) for e in mine if e.data["op"] == "XS_WRITE" and e.data["result"] is None]
    assert sum(1 for e in mine if e.data["op"] == "XS_WRITE" and e.data["result"] == "OK") == len(writes)
    vbd, vif = "device/vbd/51712", "device/vif/0"
    for entry in ((f"{vbd}/ring-ref", "8"), (f"{vbd}/event-channel", "3"), (f"{vbd}/protocol", "arm-abi"),
                  (f"{vbd}/state", "3"), (f"{vbd}/state", "4"), (f"{vif}/tx-ring-ref", "10"),
                  (f"{vif}/rx-ring-ref", "11"), (f"{vif}/request-rx-copy", "1"), (f"{vif}/state", "4")):
        assert entry in writes, entry
    ops = [e.data["op"] for e in mine]
    assert "XS_WATCH" in ops and "XS_TRANSACTION_START" in ops and "XS_TRANSACTION_END" in ops
    assert any(e.data["op"] == "XS_WATCH_EVENT" and e.dom == dom.domid for e in events
               if e.kind == "xenstore")
    assert host.services.backends["blkback"].state(dom.domid, 51712) == CONNECTED
    assert host.services.backends["netback"].state(dom.domid, 0) == CONNECTED
    xs = host.services.xenstored
    assert xs.dom0_request("READ", f"/local/domain/{dom.domid}/{vbd}/protocol") == "arm-abi"
    assert "protocol 1 (arm-abi)" in "\n".join(host.services.backends["blkback"].log_lines)


def test_dom0_maps_the_guest_s_grants_into_its_stage_2_and_copies_with_gnttab_copy(ran):
    host, _, events = ran
    dom = _guest(host)
    grants = [e for e in events if e.kind == "grant" and e.dom == 0]
    mapped = {e.data["ref"] for e in grants if e.data["op"] == "map_grant_ref" and e.data["status"] == "GNTST_okay"}
    assert {8, 9, 10, 11} <= mapped                            # blk ring and data page, tx and rx rings
    assert any(e.data["op"] == "unmap_grant_ref" and e.data["ref"] == 9 for e in grants)
    copies = {e.data["ref"] for e in grants if e.data["op"] == "copy" and e.data["status"] == "GNTST_okay"}
    assert 12 in copies and copies & {13, 14}                  # tx frames out, rx frames in
    # the blk ring stays mapped: first page of dom0's grant window, the guest's ring frame behind it
    ring_gfn = dom.images["kernel"].symbols["blk_ring"] >> 12
    guest_mfn = host.p2m(dom).lookup(ring_gfn)
    d0 = host.domains[0]
    assert host.p2m(d0).lookup(DOM0_GRANT_WINDOW) == guest_mfn
    assert host.p2m(d0).walk(DOM0_GRANT_WINDOW << 12, "w").pa == guest_mfn << 12
    assert host.p2m(d0).vmid == 1 and host.p2m(dom).vmid == 2
    ring = [e for e in events if e.kind == "ring_io" and e.dom == dom.domid]
    ops = {(e.data["ring"], e.data["op"]) for e in ring}
    assert ("blkback.1.xvda", "request WRITE") in ops and ("blkback.1.xvda", "request READ") in ops
    assert ("vif1.0-tx", "request TX") in ops and ("vif1.0-rx", "response OKAY") in ops
    sends = [e for e in events if e.kind == "evtchn" and e.dom == dom.domid]
    assert sends


def test_xl_block_list_and_network_list_show_the_connected_devices(ran):
    _, xl, _ = ran
    blk = run_xl(xl, ["block-list", "arm-guest"]).splitlines()
    assert blk[0] == "Vdev  BE  handle state evt-ch ring-ref BE-path"
    assert blk[1].split() == ["51712", "0", "1", "4", "3", "8", "/local/domain/0/backend/vbd/1/51712"]
    net = run_xl(xl, ["network-list", "1"]).splitlines()
    assert net[0] == "Idx BE Mac Addr.         handle state evt-ch   tx-/rx-ring-ref BE-path"
    assert net[1] == "0   0  00:16:3e:00:00:31     0     4      4    10/11          /local/domain/0/backend/vif/1/0"
    with pytest.raises(UserError, match="nosuch is an invalid domain identifier"):
        run_xl(xl, ["block-list", "nosuch"])
    with pytest.raises(UserError, match="usage: xl network-list DOMAIN"):
        run_xl(xl, ["network-list"])


def test_xl_console_with_a_type_on_an_arm_guest(ran):
    _, xl, _ = ran
    assert "workload: disk ok" in run_xl(xl, ["console", "-t", "pv", "arm-guest"])
    with pytest.raises(UserError, match="Unable to attach console"):
        run_xl(xl, ["console", "-t", "serial", "arm-guest"])


def test_xenlab_xl_network_list_on_the_command_line(capsys):
    from lab.cli import main
    assert main(["xl", "--scenario", str(ARM / "arm.toml"), "network-list", "arm-guest"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[1].split() == ["0", "0", "00:16:3e:00:00:31", "0", "1", "-1", "-1/-1",
                               "/local/domain/0/backend/vif/1/0"]      # created, not yet connected


def test_xl_block_list_on_x86_shows_a_frontend_that_has_not_connected_yet():
    host, xl = boot_host()
    xl.create(MACHINES / "pv-guest.cfg")
    rows = run_xl(xl, ["block-list", "pv-guest"]).splitlines()
    assert rows[1].split() == ["51712", "0", "1", "1", "-1", "-1", "/local/domain/0/backend/vbd/1/51712"]


def test_a_backend_s_page_is_reachable_only_while_its_grant_is_mapped(ran):
    """(Last: it unmaps the ring of the finished guest.)"""
    host, _, _ = ran
    dom = _guest(host)
    vbd = host.services.backends["blkback"].vbd(dom.domid, 51712)
    gt = host.grant_tables
    page = gt.frame_of(0, vbd.ring_handle)
    assert struct.unpack("<I", page.read(0, 4))[0] == 2         # req_prod: the write and the read
    d0v = host.domains[0].vcpus[0]
    assert gt.unmap_for_service(d0v, vbd.ring_handle) == 0
    assert host.p2m(host.domains[0]).lookup(DOM0_GRANT_WINDOW) is None
    with pytest.raises(FrameReleased):
        page.read(0, 4)


def test_a_hostile_arm_frontend_gets_xenbus_dev_fatal_and_dom0_goes_on(tmp_path):
    """A guest (played from Python through its own store ring) names a ring ref it never granted,
    then one granting a frame outside its memory: blkback's grant map fails through Xen's Arm
    path (GNTST_general_error, then GNTST_bad_page), it logs and closes the device; nothing is
    left mapped in dom0's stage 2 and the guest and dom0 run on."""
    from lab.dom0.xenstore import encode_request, message_type
    from lab.dom0.xenstored import GuestRing, format_message
    from lab.xen.abi.grant_table import GTF_permit_access
    from xen_helpers import GuestPage

    host, xl = boot_host(load_scenario(ARM / "arm.toml").host)
    src = tmp_path / "quiet.s"
    src.write_text(".arch arm64\n.org 0x40080000\n_start:\n1:  wfi\n    b 1b\n")
    cfg = tmp_path / "quiet.cfg"
    cfg.write_text(f'name = "quiet"\nmemory = 16\nkernel = "{src}"\n'
                   "disk = ['format=raw, vdev=xvda, access=rw, target=quiet.img']\n")
    dom = xl.create(cfg)
    host.run(20_000)
    ring = GuestRing(GuestPage(host, host.p2m(dom).lookup(dom.store_pfn)))
    req = [0]

    def xs_write(path: str, value: str) -> None:
        req[0] += 1
        t = message_type("WRITE")
        ring.send(format_message(t, req[0], 0, encode_request(t, path, value)))
        host.evtchn.send(dom.domid, dom.store_evtchn)
        host.run(20_000)

    blkback = host.services.backends["blkback"]
    fe = "device/vbd/51712"
    port = host.evtchn.alloc_unbound(dom.domid, 0)
    for key, value in (("ring-ref", "300"), ("event-channel", str(port)), ("protocol", "arm-abi"),
                       ("state", "3")):
        xs_write(f"{fe}/{key}", value)
    log = "\n".join(blkback.log_lines)
    assert "mapping in shared page 300 from domain 1" in log
    assert blkback.state(dom.domid, 51712) == 5                      # Closing
    # again, with ref 8 granted to dom0 but naming a gfn outside the guest's RAM
    assert host.add_to_physmap(dom, 1, 0, 0x40E00, {}) == 0            # its grant frame 0
    host.write_guest(dom, 0x40E00 << 12 | 8 * 8, struct.pack("<HHI", GTF_permit_access, 0, 0x7FFFF))
    for key, value in (("state", "1"), ("ring-ref", "8"), ("state", "3")):
        xs_write(f"{fe}/{key}", value)
    statuses = [e.data["status"] for e in host.trace.iter_all() if e.kind == "grant" and e.dom == 0]
    assert statuses[-2:] == ["GNTST_general_error", "GNTST_bad_page"]
    d0 = host.domains[0]
    assert host.p2m(d0).lookup(DOM0_GRANT_WINDOW) is None and host.grant_tables.refs == {}
    assert dom.alive and d0.alive
    # its console and store rings are foreign mappings in dom0's stage 2, until it is destroyed
    rings = {host.p2m(dom).lookup(dom.console_pfn), host.p2m(dom).lookup(dom.store_pfn)}
    foreign = {host.p2m(d0).lookup(DOM0_FOREIGN_WINDOW + i) for i in range(2)}
    assert foreign == rings
    xl.destroy("quiet")
    assert host.p2m(d0).lookup(DOM0_FOREIGN_WINDOW) is None and host.grant_tables.service_holds == {}
