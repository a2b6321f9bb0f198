"""The minimal kernels of machines/examples/ boot with xl create in their mode and do exactly what
docs/guest-abi.md says a kernel of that mode can count on: the PV start_info console fields
(public/xen.h) and hypercall page, the PVH hvm_start_info in rbx (public/arch-x86/hvm/start_info.h)
and HVM params (public/hvm/params.h), the HVM firmware hand-over, debug port and ACPI PM1a block
(public/hvm/ioreq.h)."""

from __future__ import annotations

import functools
import re

import pytest

from lab.dom0.xlcfg import load_config
from xen_helpers import MACHINES, small_host

EXAMPLES = MACHINES / "examples"


def message_of(kernel: str) -> str:
    text = (EXAMPLES / kernel).read_text()
    return re.search(r'message:\s+\.asciz "(.*)\\n"', text).group(1) + "\n"


@functools.cache
def booted(name: str):
    host, xl = small_host()
    dom = xl.create(load_config(EXAMPLES / f"{name}.cfg"))
    host.run(400_000)
    events = [e for e in host.trace.iter_all() if e.dom == dom.domid]
    return host, xl, dom, events


@pytest.mark.parametrize("name", ["hello-pv", "hello-pv32", "hello-pvh", "hello-hvm", "hello-pvhvm"])
def test_example_prints_its_line_and_powers_off(name):
    host, xl, dom, _ = booted(name)
    assert dom.crash_reason in (None, ""), dom.crash_reason
    assert dom.shutdown_reason == "poweroff"
    kernel = load_config(EXAMPLES / f"{name}.cfg").kernel
    assert xl.console(name).endswith(message_of(kernel))


def test_pv32_example_is_the_pv_kernel_in_the_32_bit_profile():
    _, _, dom, events = booted("hello-pv32")
    assert dom.mode == "pv32"
    assert [e.data["name"] for e in events if e.kind == "hypercall"] == ["event_channel_op", "sched_op"]


def test_pvhvm_example_asks_for_the_callback_vector_and_prints_on_hvc0():
    """xen_hvm_guest_init() / hvc_xen.c: HVM_PARAM_CALLBACK_IRQ type 2 (a vector), the console
    ring and port from HVM params; the line is one EVTCHNOP_send, not a VM exit per byte."""
    host, xl, dom, events = booted("hello-pvhvm")
    params = [e.data["args"][1] for e in events if e.kind == "hypercall" and e.data["name"] == "hvm_op"]
    assert params == ["HVM_PARAM_CALLBACK_IRQ", "HVM_PARAM_CONSOLE_EVTCHN", "HVM_PARAM_CONSOLE_PFN"]
    assert dom.callback_via_type == "vector" and dom.callback_via == 0xF3
    out = [e for e in events if e.kind == "ioport" and e.data.get("port") == 0xE9]
    assert len(out) == len("hvmloader: lab firmware, booting the kernel\n")     # the firmware's only
    from lab.session.xlcommand import run_xl
    assert run_xl(xl, ["console", "-t", "pv", "hello-pvhvm"]) == message_of("hello-pvhvm.s")


def test_pv_example_uses_only_the_console_ring_and_two_hypercalls():
    _, _, dom, events = booted("hello-pv")
    calls = [e.data["name"] for e in events if e.kind == "hypercall"]
    assert calls == ["event_channel_op", "sched_op"]
    assert not [e for e in events if e.kind in ("vmexit", "ioport")]
    assert dom.mode == "pv"


def test_pvh_example_reads_hvm_params_and_makes_no_port_io():
    _, _, dom, events = booted("hello-pvh")
    params = [e.data["args"][1] for e in events if e.kind == "hypercall" and e.data["name"] == "hvm_op"]
    assert params == ["HVM_PARAM_CONSOLE_EVTCHN", "HVM_PARAM_CONSOLE_PFN"]
    exits = [e.data.get("reason") for e in events if e.kind == "vmexit"]
    assert "IO_INSTRUCTION" not in exits and "VMCALL" in exits
    assert dom.mode == "pvh"


def test_hvm_example_exits_once_per_byte_on_the_debug_port():
    _, _, dom, events = booted("hello-hvm")
    out = [e for e in events if e.kind == "ioport" and e.data.get("port") == 0xE9]
    firmware = len("hvmloader: lab firmware, booting the kernel\n")
    assert len(out) == firmware + len(message_of("hello-hvm.s"))
    assert not [e for e in events if e.kind == "hypercall"]
    assert any(e.kind == "ioport" and e.data.get("port") == 0xB004 for e in events)
