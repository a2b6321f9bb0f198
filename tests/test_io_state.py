"""The io view: a domain's event channels with their shared_info bits, its grants and its rings,
read from where Xen and the guest keep them."""

from __future__ import annotations

import struct

import pytest

from lab.session.io_state import describe, event_channels, grants
from xen_helpers import create, small_host

pytestmark = pytest.mark.machine       # every test here boots a whole machine


def test_ports_show_their_far_end_and_the_bits_in_shared_info(tmp_path):
    host, xl = small_host()
    dom = create(xl, tmp_path, "g", "pv")
    host.run(300_000)
    ports = {p.port: p for p in event_channels(host, dom.domid)}
    assert ports[1].remote.endswith("(xenconsoled)") and ports[2].remote.endswith("(xenstored)")
    timer = next(p for p in ports.values() if p.state == "virq")
    assert timer.remote == "VIRQ_TIMER"
    # Xen's own bitmaps decide what the view says: set both bits of one port by hand.
    base = dom.shared_info_mfn << 12
    port = timer.port
    for off in (2048, 2560):                                   # evtchn_pending, evtchn_mask
        addr = base + off + port // 8
        host.mem.write(addr, bytes([host.mem.read(addr, 1)[0] | 1 << port % 8]))
    again = {p.port: p for p in event_channels(host, dom.domid)}[port]
    assert again.pending and again.masked
    assert f"port {port}" in describe(host, dom.domid)


def test_grants_list_what_a_domain_grants_and_who_maps_it(tmp_path):
    host, xl = small_host()
    dom = create(xl, tmp_path, "g", "pv")
    gt = host.grant_tables
    _, frames = gt.setup_table(dom.domid, 1)
    page = dom.p2m[5]
    host.mem.write((frames[0] << 12) + 8 * 8, struct.pack("<HHI", 1 | 4, 0, page))   # ref 8: read-only to dom0
    assert [(g.ref, g.domid, g.frame, g.flag_text) for g in grants(host, dom.domid)] == \
        [(8, 0, page, "permit_access|readonly")]
    dom0_vcpu = host.domains[0].vcpus[0]
    status, _handle, _addr = gt.map_for_service(dom0_vcpu, dom.domid, 8, readonly=True)
    assert status == 0
    g = grants(host, dom.domid)[0]
    assert g.mapped_by == ["d0 (ro)"] and "reading" in g.flag_text


def test_a_pv_disk_shows_its_ring_from_the_shared_page_and_blkback(tmp_path):
    from lab.session.io_state import rings
    host, xl = small_host()
    img = tmp_path / "g.img"
    dom = create(xl, tmp_path, "g", "pv", disk=[f"format=raw, vdev=xvda, access=rw, target={img}"])
    host.run(5_000_000)
    assert "workload: disk ok" in dom.console_output
    (ring,) = rings(host, dom.domid)
    # the workload wrote one sector and read it back: two requests, both answered
    assert (ring.name, ring.req_prod, ring.req_cons, ring.rsp_prod) == ("vbd 51712 (xvda)", 2, 2, 2)
    assert ring.backend == "blkback" and ring.state == "backend Connected" and ring.outstanding == 0
    ports = {p.remote for p in event_channels(host, dom.domid)}
    assert any(r.endswith("(blkback)") for r in ports)
    text = describe(host, dom.domid)
    assert "vbd 51712 (xvda) · backend Connected\n    req_prod 2  req_cons 2  rsp_prod 2" in text
    assert "mapped by d0 (rw)" in text
