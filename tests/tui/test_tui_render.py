"""Pane rendering for what Xen will bring: domains in other rings, 2-D walks, Xen event kinds.

These build StateViews and events by hand, so the panes are checked for the
shapes the hypervisor will produce before it exists.
"""

from __future__ import annotations

from lab.hw import ept as E
from lab.hw import pagebuild as B
from lab.hw import paging as P
from lab.hw.memory import MachineMemory
from lab.trace import Event
from lab.tui.explain import event_row, explanation
from lab.session.view import StateView, VcpuInfo
from lab.tui.state import CALL_KINDS, IO_KINDS
from lab.tui.widgets.cpu import registers_content, rings_content, source_content, summary_content
from lab.tui.widgets.logs import route
from lab.tui.widgets.pages import tlb_content, walk_content

MiB = 1 << 20
GUEST_BASE = 8 * MiB
VA = 0x40_0000


def _cpu(**over):
    cpu = {"label": "d1 pv-guest", "dom": 1, "vcpu": 0, "cpl": 3, "root": True, "rip": 0x40_0000,
           "rflags": 0x202, "flags": "IF IOPL=0", "regs": {n: 0 for n in ("rax", "rbx", "rcx", "rdx", "rsi",
                                                                              "rdi", "rbp", "rsp", "r8", "r9",
                                                                              "r10", "r11", "r12", "r13",
                                                                              "r14", "r15")},
           "cr0": 0x80010001, "cr2": 0, "cr3": 0x1000, "cr4": 0xA0, "efer": 0xD01, "halted": False,
           "stopped": None, "icount": 10, "cycles": 20, "paging": True, "next": "syscall"}
    cpu.update(over)
    return cpu


def _view(vcpus, cpu=None, walk=None, source=(), tlb=()):
    return StateView(gen=1, vcpus=tuple(vcpus), cpu=cpu or _cpu(), source=tuple(source), tlb=tuple(tlb),
                     walk=walk, walk_lines=(), walk_note="", walk_requested=None, console="",
                     breakpoints=(), images={}, cpu_hz=2_000_000_000, stopped=None)


def test_rings_place_xen_pv_and_hvm_guests():
    vcpus = [VcpuInfo("Domain-0", 0, 0, "0.0", "running", 3, True, False),
             VcpuInfo("pv-guest", 1, 0, "1.0", "running", 3, True, True),
             VcpuInfo("pv32", 2, 0, "2.0", "halted", 1, True, False),
             VcpuInfo("hvm-guest", 3, 0, "3.0", "running", 0, False, False)]
    lines = rings_content(_view(vcpus)).plain.splitlines()
    assert "Xen" in lines[1] and lines[1].index("Xen") < lines[0].index("non-root")   # ring 0 root
    assert "d3v0" in lines[1] and lines[1].index("d3v0") >= lines[0].index("non-root")  # ring 0 non-root
    assert "d2v0" in lines[2]                                                           # ring 1
    assert "▶ d1v0" in lines[4] and "d0v0" in lines[4]                                  # ring 3
    summary = summary_content(_view(vcpus)).plain
    assert "d1 pv-guest vcpu 0" in summary and "ring 3 root" in summary and "64-bit PV" in summary


def test_hvm_kernel_caption():
    cpu = _cpu(cpl=0, root=False, label="d3 hvm-guest", dom=3)
    text = summary_content(_view([VcpuInfo("hvm-guest", 3, 0, "3.0", "running", 0, False, True)], cpu)).plain
    assert "ring 0 non-root" in text and "HVM" in text


def test_registers_mark_changes_and_decode_control_bits():
    before = _cpu()
    after = _cpu(rip=0x40_0010, regs={**before["regs"], "rax": 7})
    content = registers_content(after, before)
    text = content.plain
    assert "PE WP PG" in text and "PAE PGE" in text and "SCE LME LMA NXE" in text and "IF IOPL=0" in text
    changed = [text[s.start:s.end] for s in content.spans if "warning" in str(s.style)]
    assert changed == ["0000000000000007", "0000000000400010"]


def test_source_view_radius_and_relative_paths():
    src = [(0x10 * i, f"/somewhere/lab/machines/kernels/x.s:{i}  insn {i}", i == 5) for i in range(11)]
    text = source_content(_view([], source=src), radius=2).plain
    assert "▶ 5  insn 5" in text and "insn 3" in text and "insn 7" in text and "insn 2" not in text


def _two_d_walk():
    mem = MachineMemory(64 * MiB)
    ealloc = B.FrameAllocator(mem, 0x10, 0x100)
    pml4 = ealloc() << 12
    for gpa in range(0, 4 * MiB, 4096):
        B.ept_map(mem, ealloc, pml4, gpa, gpa + GUEST_BASE, page_size=4096)
    eptp = E.make_eptp(pml4, ad=True)
    nxt = [0x100]

    def galloc():
        nxt[0] += 1
        return nxt[0] - 1

    class GuestView:
        def read_u64(self, gpa):
            return mem.read_u64(gpa + GUEST_BASE)

        def write_u64(self, gpa, value):
            mem.write_u64(gpa + GUEST_BASE, value)
    gcr3 = galloc() << 12
    B.map_page(GuestView(), galloc, gcr3, VA, 0x30_0000, user=True)
    return P.walk(mem, gcr3, VA + 0x10, access="r", cpl=3, set_ad=False,
                  table_translate=E.EptTranslator(mem, eptp, set_ad=False))


def test_two_dimensional_walk_shows_ept_steps_and_24_references():
    res = _two_d_walk()
    assert res.two_dimensional and res.mem_refs == 24
    text = walk_content(_view([], walk=res)).plain
    assert "2-D walk" in text
    assert "24 memory references" in text
    assert text.count("   gPA ") == 5                      # four guest tables and the final address
    assert "host pa" in text and f"{res.hpa:#x}" in text
    assert "(host 0x" in text                              # guest tables' machine addresses
    # EPT's upper levels, the same for every guest table here, are shown once, then folded.
    assert text.count("EPT L4 [") == 1 and text.count("same as above") == 4
    assert text.count("EPT L1 [") == 5                       # each translation's own leaf


def test_one_dimensional_walk_and_fault_lines():
    mem = MachineMemory(16 * MiB)
    alloc = B.FrameAllocator(mem, 0x10, 0x100)
    cr3 = alloc() << 12
    B.map_page(mem, alloc, cr3, VA, 0x30_0000, user=True)
    ok = P.walk(mem, cr3, VA, set_ad=False)
    text = walk_content(_view([], walk=ok)).plain
    assert "L4 PML4" in text and "L1 PT" in text and "pa 0x300000" in text and "4 memory references" in text
    bad = P.walk(mem, cr3, VA + (1 << 30), set_ad=False)
    text = walk_content(_view([], walk=bad)).plain
    assert "#PF  error code 0x0 (-)" in text and "not present at L3" in text


def test_tlb_listing():
    from lab.hw.tlb import TlbEntry
    e = TlbEntry(0x400, 0x800, 4096, True, True, False, False, True)
    text = tlb_content(_view([], tlb=[e])).plain
    assert "1 entries" in text and e.describe() in text


def test_xen_event_kinds_are_routed_and_explained():
    evs = [Event(1, 5, 0, 1, 0, "hypercall", {"name": "event_channel_op", "nr": 32, "args": [4], "ret": 0}),
           Event(2, 6, 0, 2, 0, "vmexit", {"reason": "IO_INSTRUCTION", "nr": 30, "rip": 0x1000}),
           Event(3, 7, 0, 1, 0, "evtchn", {"op": "send", "port": 3}),
           Event(4, 8, 0, 0, 0, "grant", {"op": "map", "ref": 8, "granter": 1}),
           Event(5, 9, 0, 0, 0, "xenstore", {"op": "write", "path": "/local/domain/1/device/vbd/768/state",
                                            "value": "4"}),
           Event(6, 9, 0, 2, 0, "ioreq", {"port": 0x1F0, "size": 2, "dir": "in", "value": 0, "state": "ready"}),
           Event(7, 9, 0, 1, 0, "ring_io", {"ring": "blkif", "op": "request", "req_prod": 1})]
    assert [e.seq for e in route(evs, CALL_KINDS, 100)] == [1, 2]
    assert [e.seq for e in route(evs, IO_KINDS, 100)] == [3, 4, 5, 6, 7]
    for ev in evs:
        assert explanation(ev)
        assert event_row(ev).startswith(f"#{ev.seq}")
    assert "grant" in explanation(evs[3]) and "xenstore" in explanation(evs[4])
    assert "d2.v0" in event_row(evs[1]) and "IO_INSTRUCTION" in event_row(evs[1])
    assert "in  <- 0x0 size 2 [ready]" in event_row(evs[5])


def test_rings_name_the_focused_guest_kernel_or_user_and_wrap_a_crowded_cell():
    from lab.session.view import DomainInfo
    pv_kernel = VcpuInfo("pv-guest (pv)", 1, 0, "1.0", "running", 3, True, True, runstate="running", pcpu=0,
                         role="kernel", mode="pv")
    hvm = [VcpuInfo(f"g{d} (hvm)", d, 0, f"{d}.0", "running", 0, False, False, runstate="runnable", pcpu=1,
                    role="kernel", mode="hvm") for d in range(2, 7)]
    dom0 = VcpuInfo("Domain-0 (pv)", 0, 0, "0.0", "blocked", 0, True, False, runstate="blocked", pcpu=1,
                    role="services", has_cpu=False, mode="pv")
    view = StateView(gen=1, vcpus=(pv_kernel, *hvm), cpu=_cpu(label="pv-guest (pv)"), source=(), tlb=(),
                     walk=None, walk_lines=(), walk_note="", walk_requested=None, console="", breakpoints=(),
                     images={}, cpu_hz=None, stopped=None, xen=True, focus_dom=1,
                     domains=(DomainInfo(0, "Domain-0", "pv", "pv", "blocked", "-b----", 64, (dom0,), False),))
    lines = rings_content(view).plain.splitlines()
    nonroot = lines[0].index("non-root")
    assert lines[1].startswith("  0   Xen")
    # Five HVM vCPUs in ring 0 non-root do not fit one cell: they continue on the next line.
    assert lines[1][nonroot:].split() == ["d2v0", "d3v0", "d4v0"]
    assert lines[2].startswith("      ") and lines[2][nonroot:].split() == ["d5v0", "d6v0"]
    assert lines[3].startswith("  1 ")
    assert "▶ d1v0 kernel" in lines[5] and lines[5].startswith("  3 ")
    assert "d0v0" not in "".join(lines)                   # dom0's services run no guest code
    summary = summary_content(view).plain
    assert summary.startswith("d1 pv-guest (pv) vcpu 0  running on pCPU 0")
    assert "ring 3 root: the 64-bit PV guest kernel" in summary
    user = VcpuInfo("pv-guest (pv)", 1, 0, "1.0", "running", 3, True, True, runstate="running", pcpu=0,
                    role="user", mode="pv")
    view = StateView(**{**view.__dict__, "vcpus": (user,)})
    assert "▶ d1v0 user" in rings_content(view).plain
    assert "a user program of the PV guest" in summary_content(view).plain


def test_service_domain_summary_and_pages():
    from lab.session.view import DomainInfo
    dom0 = VcpuInfo("Domain-0 (pv)", 0, 0, "0.0", "blocked", 0, True, True, runstate="blocked", pcpu=1,
                    role="services", has_cpu=False, mode="pv")
    view = StateView(gen=1, vcpus=(), cpu=_cpu(), source=(), tlb=(), walk=None, walk_lines=(),
                     walk_note="Domain-0 runs no guest code in the lab", walk_requested=None, console="",
                     breakpoints=(), images={}, cpu_hz=None, stopped=None, xen=True, focus_dom=0,
                     service="its vCPU runs dom0 services",
                     domains=(DomainInfo(0, "Domain-0", "pv", "pv", "blocked", "-b----", 64, (dom0,), True),))
    assert summary_content(view).plain == "d0 Domain-0 (pv)  dom0 services\nits vCPU runs dom0 services"
    assert "no guest code" in walk_content(view).plain
    assert "no guest code" in tlb_content(view).plain


def test_domain_tree_labels():
    from lab.session.view import DomainInfo
    from lab.tui.widgets.domains import domain_label, vcpu_label
    v = VcpuInfo("pv-guest (pv)", 1, 0, "1.0", "running", 3, True, True, runstate="running", pcpu=1,
                 role="kernel", mode="pv")
    assert vcpu_label(v, {}).plain == "▶ vcpu0 pCPU1 running · ring 3 root kernel"
    assert len(vcpu_label(v, {}).plain) <= 42            # one line of the pane at its narrowest
    h = VcpuInfo("hvm-guest (hvm)", 2, 0, "2.0", "halted", 0, False, False, runstate="blocked", pcpu=None,
                 role="kernel", mode="hvm")
    assert vcpu_label(h, {}).plain == "  vcpu0 pCPU- halted · ring 0 non-root"
    s = VcpuInfo("Domain-0 (pv)", 0, 0, "0.0", "blocked", 0, True, False, runstate="blocked", pcpu=0,
                 role="services", has_cpu=False, mode="pv")
    assert vcpu_label(s, {}).plain == "  vcpu0 pCPU0 blocked · dom0 services"
    d = DomainInfo(1, "pv-guest", "pv", "pv", "shutdown", "---s--", 32, (v,), True, "poweroff")
    assert domain_label(d, {}).plain == "d1 pv-guest  pv · shutdown (poweroff) · 32 MiB"
    bare = VcpuInfo("bare metal", None, 0, "0.0", "running", 0, True, True)
    assert vcpu_label(bare, {}).plain == "▶ cpu0 ring 0 root running"


def test_log_filter_names_xen_and_domains():
    from lab.tui.state import LogFilter
    f = LogFilter(CALL_KINDS, xen=True, names={1: "pv-guest", 2: "hvm-guest"})
    f.set_dom("xen")
    assert f.dom is None and f.describe() == "kind all · domain Xen"
    f.set_dom("hvm-guest")
    assert f.dom == 2 and f.describe() == "kind all · domain d2 hvm-guest"
    f.set_dom("d1")
    assert f.dom == 1
    bare = LogFilter(CALL_KINDS)
    bare.set_dom("bare")
    assert bare.describe() == "kind all · domain bare"
    import pytest
    with pytest.raises(ValueError, match="'xen'"):
        f.set_dom("nobody")


def test_xen_events_are_labelled_xen_and_hypercalls_name_their_caller():
    from lab.isa.image import Image, Section, SourceLine
    from lab.tui.explain import describe_event
    create = Event(3, 0, 0, None, 0, "domain", {"op": "create", "name": "pv-guest", "state": "running"})
    assert " Xen " in event_row(create, xen=True) and "bare" not in event_row(create, xen=True)
    assert "bare.v0" in event_row(create)                   # on bare metal, the machine's own
    lines = describe_event(create, (), xen=True)
    assert "Xen)" in lines[0] and "Xen's own work" in lines[1] and "created" in lines[2]
    page = 0x2000
    img = Image(sections=[Section(".text", 0x1000, bytearray(0x2000))], symbols={"hypercall_page": page},
                line_map={0x1100: SourceLine("machines/kernels/pv_ops.s", 150, "    call HC_mmu_update")},
                item_sizes={0x1100: 16})
    hc = Event(9, 100, 0, 1, 0, "hypercall", {"name": "mmu_update", "nr": 1, "args": [], "ret": 0,
                                              "rip": page + 0xfe0, "caller": 0x1100})
    lines = describe_event(hc, (img,), xen=True, names={1: "pv-guest"})
    assert "d1 pv-guest vcpu 0" in lines[0]
    assert lines[1] == "called from machines/kernels/pv_ops.s:150  call HC_mmu_update"
    assert lines[2] == "trapped into Xen in the hypercall page (written by Xen) at hypercall_page+0xfe0"
    assert describe_event(hc, (), xen=True)[1] == "called from 0x1100 (no source line for it)"
