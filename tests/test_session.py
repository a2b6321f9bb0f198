"""Session views on a Xen host: the source view inside a domain's hypercall page."""

from __future__ import annotations

import pytest

from lab.isa.encoding import INSN_SIZE
from lab.paths import MACHINES
from lab.session.commands import execute
from lab.session.targets import build_target
from lab.session.session import HYPERCALL_PAGE_LABEL, Session

pytestmark = pytest.mark.machine       # every test here boots a whole machine


@pytest.fixture(scope="module")
def at_mmu_update():
    """The default scenario right after the PV guest's first mmu_update, focused on the PV guest."""
    _kind, host, _xl, _warnings = build_target([str(MACHINES / "default.toml")])
    s = Session(host)
    execute(s, "until hypercall:mmu_update")
    s.set_focus("pv-guest")
    return s


def test_source_view_in_the_hypercall_page_shows_the_stub_xen_wrote(at_mmu_update):
    s = at_mmu_update
    rip = s.focus.cpu.rip
    kernel = s.machine.images_for(s.focus.dom)["kernel"]
    page = kernel.symbols["hypercall_page"]
    assert page <= rip < page + 4096            # just after the trap, in the page's shared tail
    assert s.hypercall_page_at(rip) == page
    lines = s.source_view()
    # The contract: (address, text, is_current), one instruction apart, the current one marked.
    assert [cur for _, _, cur in lines].count(True) == 1
    addrs = [a for a, _, _ in lines]
    assert addrs == list(range(addrs[0], addrs[-1] + 1, INSN_SIZE))
    assert all(page <= a < page + 4096 for a in addrs)
    current = next(text for a, text, cur in lines if cur)
    assert current == f"{HYPERCALL_PAGE_LABEL}:+{rip - page:#x}  ret"
    texts = [text for _, text, _ in lines]
    assert any(t.endswith("  syscall") for t in texts)           # the trap into Xen (64-bit PV)
    assert any("  jmp 0x" in t for t in texts)                   # other stubs jump to the tail
    assert not any(".zero" in t for t in texts)                  # never the source's placeholder


def test_a_stub_names_its_hypercall(at_mmu_update):
    s = at_mmu_update
    page = s.machine.images_for(s.focus.dom)["kernel"].symbols["hypercall_page"]
    smap = s.source_map()
    text = s._stub_text(smap.place(page + 1 * 32), s.focus)
    assert text == "mov eax, 0x1    ; stub 1: mmu_update"
    assert s._stub_text(smap.place(page + 1 * 32 + INSN_SIZE), s.focus).startswith("jmp 0x")


def test_after_the_stub_returns_the_kernel_source_is_shown_again(at_mmu_update):
    s = at_mmu_update
    cpu = s.focus.cpu
    before = cpu.icount
    for _ in range(100):                         # the host may run the other guest first
        if cpu.icount > before:
            break
        s.step(1)
    assert cpu.icount == before + 1              # ret: back to the kernel's call site
    lines = s.source_view()
    current = next(text for _, text, cur in lines if cur)
    assert current.startswith("machines/kernels/pv_ops.s:")
    assert not any(HYPERCALL_PAGE_LABEL in text for _, text, _ in lines)


def test_hvm_hypercall_page_holds_vmcall():
    _kind, host, _xl, _warnings = build_target([str(MACHINES / "default.toml")])
    s = Session(host)
    execute(s, "until vmexit:VMCALL")
    s.set_focus("hvm-guest")
    texts = [text for _, text, _ in s.source_view()]
    assert any(t.startswith(HYPERCALL_PAGE_LABEL) and t.endswith("  vmcall") for t in texts)


def test_every_command_is_an_input_stamped_with_the_time_it_applied():
    _kind, machine, _xl, _w = build_target([str(MACHINES / "kernels" / "native.s")])
    session = Session(machine)
    seen = []
    session.input_listeners.append(seen.append)
    execute(session, "step 3")
    execute(session, "  regs ")
    assert [(i.kind, i.text) for i in seen] == [("command", "step 3"), ("command", "regs")]
    assert seen[0].insns == 0
    assert seen[1].insns == 3 and seen[1].cycles == session.clock()[1] > 0


def test_a_mistyped_command_is_no_input():
    _kind, machine, _xl, _w = build_target([str(MACHINES / "kernels" / "native.s")])
    session = Session(machine)
    seen = []
    session.input_listeners.append(seen.append)
    with pytest.raises(Exception):
        execute(session, "stpe 3")
    assert seen == []


def test_the_clock_of_a_xen_host_counts_every_vcpu():
    _kind, machine, _xl, _w = build_target([str(MACHINES / "default.toml")])
    session = Session(machine)
    execute(session, "run 20000")
    insns, cycles = session.clock()
    assert insns == machine.instructions >= 20000
    assert cycles == max(machine.clock)
