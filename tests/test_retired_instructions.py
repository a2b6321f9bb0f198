"""An instruction-bounded run counts the instructions Xen carries out for the guest.

A guest instruction that exits is completed by Xen: emulated in Xen (a port or MMIO
register of a device in its intercept table, hvm/intercept.c; CPUID; a hypercall),
by the device model after an ioreq, by Xen's null handler, or, under shadow paging, by
Xen's emulator writing a guest page table (mm/shadow/multi.c sh_page_fault() ->
x86_emulate). Each retires as the guest's instruction, so ``host.run(n)`` stops after
exactly n guest instructions whichever path each took.
"""

from __future__ import annotations

import pytest

from xen_helpers import events, small_host, write_cfg
from lab.paths import MACHINES
from lab.session.scenario import load_scenario, start_scenario

pytestmark = pytest.mark.machine
GUEST = __import__("pathlib").Path(__file__).parent / "data" / "guests" / "hvm_retire.s"
RUNS = ["io_xen", "io_dm", "io_none", "mmio_xen", "mmio_none", "mmio_dm", "exits", "plain", "done"]


def _boot(tmp_path, hap: int):
    host, xl = small_host(ept=bool(hap))
    dom = xl.create(write_cfg(tmp_path, f"retire-{hap}", "hvm", GUEST, memory=16, hap=hap))
    cpu = dom.vcpus[0].cpu
    sym = dom.images["kernel"].symbols
    for _ in range(200_000):
        if cpu.rip == sym["io_xen"]:
            break
        host.run(1)
    assert cpu.rip == sym["io_xen"]
    return host, dom, cpu, sym


@pytest.mark.parametrize("hap", [1, 0], ids=["ept", "shadow"])
def test_run_n_retires_exactly_n_guest_instructions_on_every_path(tmp_path, hap):
    host, dom, cpu, sym = _boot(tmp_path, hap)
    for here, there in zip(RUNS, RUNS[1:]):
        before = host.instructions
        host.run(1)
        assert (cpu.rip, host.instructions) == (sym[here] + 16, before + 1), f"one instruction of {here}"
        host.run(7)
        assert (cpu.rip, host.instructions) == (sym[there], before + 8), f"the rest of {here}"
    # every path was taken as its name says
    io = events(host, "ioport", dom=dom.domid)
    emulators = {e.data["port"]: e.data["emulator"] for e in io}
    assert {p: emulators[p] for p in (0x21, 0x3FD, 0x80)} == {0x21: "xen", 0x3FD: "device model", 0x80: "xen"}
    mmio = events(host, "mmio", dom=dom.domid)
    assert {e.data["device"].split(":")[0] for e in mmio} >= {"vLAPIC (in Xen", "none"}
    exits = {e.data["reason"] for e in events(host, "vmexit", dom=dom.domid)}
    assert {"IO_INSTRUCTION", "CPUID", "VMCALL"} <= exits
    copies = [e for e in events(host, "ioreq", dom=dom.domid) if e.data.get("type") == "IOREQ_TYPE_COPY"
              and e.data.get("state") == "STATE_IOREQ_READY"]
    assert len(copies) == 8                                        # the platform BAR's, one per load


def test_an_instruction_xen_emulates_under_shadow_paging_retires_once():
    """sh_page_fault(): a write to one of the guest's own page tables is carried out by Xen's
    emulator; the instruction retires once, as the guest's, and run(1) stops right after it."""
    # where the stock HVM kernel first writes a page table of its own under shadow paging,
    # and how many instructions had retired once Xen had carried that write out
    first = _shadow_host()
    seen: list[int] = []
    hit = first.run_until(lambda e: e.kind == "pagetable" and e.data.get("result") == "emulated"
                          and not seen.append(first.instructions))
    assert hit is not None
    rip = int(hit.data["message"].split("emulated the instruction at ")[1].split(";")[0], 16)
    # the same machine again, stopped one instruction short of that: the write is next
    host = _shadow_host()
    cpu = _hvm_vcpu(host).cpu
    host.run(seen[0] - 1)
    assert cpu.rip == rip
    before, seq = host.instructions, host.trace.seq
    host.run(1)
    emulated = [e for e in host.trace.iter_all() if e.seq >= seq and e.kind == "pagetable"
                and e.data.get("result") == "emulated"]
    assert emulated, "the step was Xen's emulation of the guest's page-table write"
    assert (cpu.rip, host.instructions) == (rip + 16, before + 1)


def _shadow_host():
    host, _ = start_scenario(load_scenario(MACHINES / "shadow.toml"))
    return host


def _hvm_vcpu(host):
    dom = next(d for d in host.domains.values() if d.is_hvm and d.extra.get("shadow") is not None)
    return dom.vcpus[0]
