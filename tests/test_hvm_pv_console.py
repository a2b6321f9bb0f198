"""The PV console of HVM-family guests: libxl gives every HVM guest a console ring page and event
channel in HVM_PARAM_CONSOLE_PFN / HVM_PARAM_CONSOLE_EVTCHN (public/hvm/params.h; the special
pages of tools/libs/guest/xg_dom_x86.c), xenconsoled drains it, and a PVHVM kernel writes hvc0
there as Linux's hvc_xen.c does (xen_hvm_console_init), so `xl console` shows its output without
an I/O exit per byte."""

from __future__ import annotations

import functools

import pytest

from lab.dom0.xlcfg import load_config
from lab.xen import abi
from xen_helpers import MACHINES, small_host


@functools.cache
def booted(cfg: str):
    host, xl = small_host()
    conf = load_config(MACHINES / cfg)
    conf.disks, conf.vifs = [], []
    dom = xl.create(conf)
    host.run(2_000_000)
    return host, xl, dom


def e9_writes_after(host, dom, seq: int) -> int:
    return sum(1 for e in host.trace.iter_all() if e.kind == "ioport" and e.dom == dom.domid
               and e.data.get("port") == 0xE9 and e.seq > seq)


@pytest.mark.parametrize("cfg", ["pvhvm-guest.cfg", "hvm-guest.cfg"])
def test_every_hvm_guest_is_given_a_console_ring_and_port(cfg):
    host, _, dom = booted(cfg)
    pfn = dom.hvm_params[abi.HVM_PARAM_CONSOLE_PFN]
    port = dom.hvm_params[abi.HVM_PARAM_CONSOLE_EVTCHN]
    assert pfn and port and (pfn, port) == (dom.console_pfn, dom.console_evtchn)
    # the ring page is neither the store page nor free memory the kernel may hand out
    assert pfn != dom.hvm_params[abi.HVM_PARAM_STORE_PFN]
    assert dom.domid in host.services.xenconsoled.pages


def test_pvhvm_kernel_prints_through_the_ring_and_xl_console_shows_it():
    host, xl, dom = booted("pvhvm-guest.cfg")
    # the kernel asked for both params with HVMOP_get_param
    asked = {e.data["args"][1] for e in host.trace.iter_all() if e.kind == "hypercall" and e.dom == dom.domid
             and e.data.get("name") == "hvm_op" and e.data["args"][0] == "HVMOP_get_param"}
    assert {"HVM_PARAM_CONSOLE_PFN", "HVM_PARAM_CONSOLE_EVTCHN"} <= asked
    sends = [e for e in host.trace.iter_all() if e.kind == "evtchn" and e.dom == dom.domid
             and e.data.get("op") == "send" and e.data.get("port") == dom.console_evtchn]
    assert sends, "the PVHVM kernel never notified its console port"
    first_send = min(e.seq for e in sends)
    assert e9_writes_after(host, dom, first_send) == 0, "after hvc0 is up nothing goes to port 0xe9"
    out = xl.console(dom.name)
    assert "pvhvm: PV timer" in out            # printed after the ring was found: it went through hvc0


def test_an_unmodified_hvm_kernel_ignores_the_ring():
    host, xl, dom = booted("hvm-guest.cfg")
    assert not any(e.kind == "evtchn" and e.dom == dom.domid and e.data.get("op") == "send"
                   and e.data.get("port") == dom.console_evtchn for e in host.trace.iter_all())
    assert e9_writes_after(host, dom, 0) > 0
    assert "xenlab kernel (HVM guest" in xl.console(dom.name)


def test_xl_console_input_goes_to_the_primary_console_or_the_one_t_names(tmp_path):
    """tools/libs/light/libxl_console.c libxl__primary_console_find(): `xl console` of an HVM
    guest, PVHVM included, is its serial port (LIBXL_CONSOLE_TYPE_SERIAL); `xl console -t pv`
    (tools/xl/xl_console.c) is the PV console, where xenconsoled writes what is typed into the
    ring's in[] and notifies the guest's port (tools/console/daemon/io.c). A PV guest has no
    serial console: "Unable to attach console"."""
    from lab.errors import UserError
    from lab.session.commands import type_into_console
    from lab.session.xlcommand import run_xl
    from lab.xen.console import IN_PROD
    host, xl = small_host()
    conf = load_config(MACHINES / "pvhvm-guest.cfg")
    conf.disks, conf.vifs = [], []
    dom = xl.create(conf)
    pv = xl.create(load_config(MACHINES / "pv-guest.cfg"))
    host.run(300_000)
    page = host.services.xenconsoled.pages[dom.domid]
    before = page.read_u32(IN_PROD)
    assert "serial port 0x3f8" in type_into_console(host, dom, "stats\n")
    assert page.read_u32(IN_PROD) == before, "the primary console of an HVM guest is COM1"
    assert "console ring" in type_into_console(host, dom, "stats\n", "pv")
    assert page.read_u32(IN_PROD) == before + 6
    rings = [e for e in host.trace.iter_all() if e.kind == "ring_io" and e.dom == dom.domid
             and e.data.get("ring") == "console"]
    assert rings and rings[-1].data["op"] == "input: 6 byte(s) into in[]" and rings[-1].data["notify"]
    with pytest.raises(UserError, match="Unable to attach console"):
        type_into_console(host, pv, "x\n", "serial")
    with pytest.raises(UserError, match="Unable to attach console"):
        run_xl(xl, ["console", "-t", "serial", pv.name])
    with pytest.raises(UserError, match="console type supported are"):
        run_xl(xl, ["console", "-t", "vuart", dom.name])
    # -t pv shows the PV console alone (what the kernel wrote to hvc0), -t serial COM1 alone
    pv_text = run_xl(xl, ["console", "-t", "pv", dom.name])
    assert pv_text == host.services.xenconsoled.output(dom) and "xenlab kernel (PVHVM guest" in pv_text
    assert pv_text != xl.console(dom.name) and pv_text in xl.console(dom.name)
    assert host.services.device_model.serial_output(dom) == ""      # the PVHVM kernel prints nothing on COM1
    assert run_xl(xl, ["console", "-t", "serial", dom.name]) == "(no console output from pvhvm-guest yet)"
