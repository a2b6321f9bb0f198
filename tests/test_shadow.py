"""Shadow paging (hap = 0, or a host without EPT/NPT): Xen's shadows of an HVM guest's page tables.

Two guests are used: the lab's own HVM kernel running the workload (it must
print the same checksum as over EPT), and a tiny kernel written here that
pokes at shadow paging on purpose: it writes its own page tables, takes page
faults, uses invlpg and a 2 MiB page, and records what it saw in its memory
for the test to read back.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import dataclasses

import pytest
from hypothesis import given, settings, strategies as st

from lab.hw.costs import load_costs
from lab.dom0.xlcfg import load_config
from lab.paths import MACHINES
from lab.session.scenario import boot_host, load_scenario, start_scenario
from lab.xen.host import HostConfig
from lab.xen.shadow import OPS, ShadowPaging
from test_machine import expected_checksum

pytestmark = pytest.mark.machine       # every test here boots a whole machine

LIMIT = 3_000_000
CHECKSUM = f"workload: checksum {expected_checksum():#018x}"


def _run(cfg, host_config: HostConfig | None = None, limit: int = LIMIT):
    """The guest with its disk in memory and no network card: a ping waits for a reply,
    and how long it waits depends on the paging mode's speed, which these comparisons
    must not see; a disk image file would differ from one run to the next."""
    host, xl = boot_host(host_config)
    conf = load_config(cfg)
    conf.disks = [dataclasses.replace(d, target=None) for d in conf.disks]
    conf.vifs = []
    dom = xl.create(conf)
    host.run(limit)
    return host, dom


def _events(host, dom, kind: str):
    return [e for e in host.trace.iter_all() if e.kind == kind and e.dom == dom.domid]


def _exits(host, dom) -> Counter:
    return Counter((e.data["reason"], e.data["nr"]) for e in _events(host, dom, "vmexit"))


def _shadow_events(host, dom, op: str | None = None):
    return [e for e in _events(host, dom, "pagetable")
            if str(e.data["op"]).startswith("shadow") or e.data["op"] == "inject #PF"
            if op is None or e.data["op"] == op]


@pytest.fixture(scope="module")
def shadow_run():
    return _run(MACHINES / "hvm-shadow.cfg")


@pytest.fixture(scope="module")
def ept_run():
    return _run(MACHINES / "hvm-guest.cfg")


# ---------------------------------------------------------------- the workload
def test_hap0_guest_prints_the_same_checksum_as_over_ept(shadow_run, ept_run):
    host, dom = shadow_run
    assert dom.state == "shutdown" and dom.shutdown_reason == "poweroff", dom.crash_reason
    assert isinstance(dom.extra.get("shadow"), ShadowPaging) and dom.ept_root == 0
    assert CHECKSUM in dom.console_output
    # the same output, but for the network card's address (each config has a MAC of its own)
    def without_mac(text):
        return [line for line in text.splitlines() if not line.startswith("net: card up")]
    assert without_mac(dom.console_output) == without_mac(ept_run[1].console_output)


def test_trace_shows_cr3_exits_and_shadow_work_and_no_ept(shadow_run):
    host, dom = shadow_run
    exits = _exits(host, dom)
    assert exits[("CR_ACCESS", 28)] == 3                     # two mov to cr3, one mov from cr3
    assert exits[("EXCEPTION_NMI", 0)] > 32
    assert not any(reason.startswith("EPT") for reason, _ in exits)
    pf_exits = [e for e in _events(host, dom, "vmexit") if e.data["reason"] == "EXCEPTION_NMI"]
    assert all(e.data["info"]["vector"] == 14 for e in pf_exits)
    # The qualification of a #PF exit is the faulting linear address (vmx.c, SDM 28.2.1);
    # the error code is in the exit's interruption information.
    assert all(e.data["qualification"] == e.data["info"]["cr2"] for e in pf_exits)
    assert any(e.data["qualification"] != e.data["info"]["error_code"] for e in pf_exits)
    ops = Counter(e.data["op"] for e in _shadow_events(host, dom))
    assert set(ops) == set(OPS) - {"shadow recycle"}        # its pool never runs short
    assert ops["inject #PF"] == 32                            # the workload's demand faults
    assert ops["shadow sync"] > 0 and ops["shadow fault"] > 0
    emulated = [e for e in _shadow_events(host, dom, "shadow fault") if e.data["result"] == "emulated"]
    # the guest writing its own page tables: the workload's 32, and the local APIC's page the
    # kernel maps at boot
    assert len(emulated) == 33
    assert not any(e.data["op"] == "ept violation" for e in _events(host, dom, "pagetable"))
    for e in _shadow_events(host, dom):
        assert set(e.data) == {"op", "addr", "value", "level", "result", "message"} and e.data["message"]


def test_guest_page_faults_reach_the_guest_exactly_as_over_ept(shadow_run, ept_run):
    def faults(run):
        host, dom = run
        return [(e.data["cr2"], e.data["error_code"], e.data["rip"], e.data["reason"])
                for e in _events(host, dom, "trap") if e.data["mnemonic"] == "#PF"]
    assert faults(shadow_run) == faults(ept_run)
    assert len(faults(shadow_run)) == 32
    assert all(ec == 6 for _, ec, _, _ in faults(shadow_run))   # user-mode writes to not-present pages


def test_exit_counts_over_ept_and_shadow_differ_only_where_paging_does(shadow_run, ept_run):
    shadow, ept = _exits(*shadow_run), _exits(*ept_run)
    paging_exits = {("CR_ACCESS", 28), ("EXCEPTION_NMI", 0)}
    # The local APIC's MMIO (the kernel turns it on and sets its timer up at boot) reaches Xen
    # as EPT violations over EPT, and as page faults on its shadow entry under shadow paging.
    lapic_mmio = {("EPT_VIOLATION", 48)}
    assert ept[("EPT_VIOLATION", 48)] == 3
    assert {k: n for k, n in shadow.items() if k not in paging_exits} == \
        {k: n for k, n in ept.items() if k not in lapic_mmio}
    assert not paging_exits & set(ept) and not lapic_mmio & set(shadow)
    host, dom = shadow_run
    hardware_faults = [e for e in _events(host, dom, "pagetable") if e.data["op"] == "fault"]
    # each a #PF exit; the 3 local APIC accesses (MMIO) fault once more, in the walk Xen's
    # emulator makes of the page (mmio.py)
    lapic = [e for e in hardware_faults if e.data["addr"] >> 12 == 0xFFFF_8880_FEE0_0000 >> 12]
    assert len(lapic) == 6
    assert shadow[("EXCEPTION_NMI", 0)] == len(hardware_faults) - 3
    # Xen carried out the 3 CR3 accesses and the 33 page-table writes for the guest (the
    # workload's 32 and the local APIC's mapping); they retire as the guest's instructions,
    # so the guest ran as many either way.
    emulated = [e for e in _events(host, dom, "pagetable") if e.data.get("result") == "emulated"]
    assert shadow[("CR_ACCESS", 28)] == 3 and len(emulated) == 33
    assert ept_run[1].vcpus[0].cpu.icount == dom.vcpus[0].cpu.icount
    assert dom.vcpus[0].run_cycles > ept_run[1].vcpus[0].run_cycles


def test_shadow_tables_live_in_xen_memory_and_map_only_guest_frames(shadow_run):
    host, dom = shadow_run
    sp: ShadowPaging = dom.extra["shadow"]
    guest = set(dom.p2m)
    assert sp.frames and not guest & set(sp.frames)
    # Xen's frames, from the domain's own paging pool (hap/shadow allocation)
    pool = dom.extra["paging_pool"]
    assert all(host.mm.pv.pages[mfn].owner == 0x7FF2 and mfn in pool.frames for mfn in sp.frames)
    leaves = sp.leaves()
    assert leaves and all(mfn in guest for _, _, mfn in leaves)
    # Walk every table reachable from each vCPU's roots, too.
    cpu = dom.vcpus[0].cpu
    seen = set()

    def walk(table: int, level: int) -> None:
        seen.add(table)
        assert table in sp.frames, f"shadow table {table:#x} is not one of Xen's shadow frames"
        for i in range(512):
            e = host.mem.read_u64((table << 12) + i * 8)
            if not e & 1:
                continue
            target = (e & 0x000F_FFFF_FFFF_F000) >> 12
            if level == 1:
                assert target in guest
            else:
                assert not e & 0x80, "shadows never use superpages"
                walk(target, level - 1)
    walk(cpu.shadow_cr3 >> 12, 4)
    walk(cpu.shadow_unpaged_cr3 >> 12, 4)
    assert len(seen) > 4


def test_the_guest_reads_its_own_cr3_not_the_shadow(shadow_run):
    host, dom = shadow_run
    cpu = dom.vcpus[0].cpu
    reads = [e for e in _events(host, dom, "vmexit") if e.data["reason"] == "CR_ACCESS" and "value" not in e.data["info"]]
    writes = [e for e in _events(host, dom, "vmexit") if e.data["reason"] == "CR_ACCESS" and "value" in e.data["info"]]
    assert len(reads) == 1 and len(writes) == 2
    assert cpu.cr3 == writes[-1].data["info"]["value"]      # guest-physical
    assert cpu.shadow_cr3 >> 12 in dom.extra["shadow"].frames
    assert cpu.shadow_cr3 >> 12 not in set(dom.p2m)


def test_unpaged_mode_runs_the_firmware_on_a_1_to_1_map(shadow_run):
    host, dom = shadow_run
    first = _shadow_events(host, dom, "shadow fault")[0]
    assert first.data["addr"] == 0x8000 and "paging off" in first.data["message"]
    sp = dom.extra["shadow"]
    assert ("1:1", 4, 0) in sp.frames.values()


def test_host_without_ept_shadows_a_hap_guest():
    host, dom = _run(MACHINES / "hvm-guest.cfg", HostConfig(ept=False))
    assert dom.hap and "shadow" in dom.extra
    assert CHECKSUM in dom.console_output
    assert _exits(host, dom)[("CR_ACCESS", 28)] == 3


def test_amd_host_reports_shadow_exits_by_svm_codes():
    host, dom = _run(MACHINES / "hvm-shadow.cfg", HostConfig(vendor="amd"))
    assert CHECKSUM in dom.console_output
    exits = _exits(host, dom)
    nrs = Counter()
    for (_, nr), n in exits.items():
        nrs[nr] += n
    # Two mov to cr3 and one mov from cr3: VMEXIT_CR3_WRITE and VMEXIT_CR3_READ (svm/vmcb.h)
    assert nrs[0x13] == 2 and nrs[0x03] == 1
    assert ("CR3_READ", 0x03) in exits
    assert nrs[0x4E] > 32                                     # VMEXIT_EXCEPTION_PF (0x40 + 14)
    assert ("EXCEPTION_PF", 0x4E) in exits                    # Xen's name for it (svm/vmcb.h)
    assert ("CR3_WRITE", 0x13) in exits
    assert 0x400 not in nrs and 28 not in nrs                 # no NPF, no VMX numbers
    # IOIO, as over NPT: the console's bytes, the IDE disk's registers and data words, and the
    # boot's PICs, PM timer and UART
    assert nrs[0x7B] == 1276


def test_every_shadow_operation_costs_cycles_from_the_cost_table():
    cheap = load_costs()
    cheap.event["shadow_sync"] = 0
    base = _run(MACHINES / "hvm-shadow.cfg")
    free = _run(MACHINES / "hvm-shadow.cfg", HostConfig(costs=cheap))
    faults = len(_shadow_events(*base, "shadow fault"))
    assert faults == len(_shadow_events(*free, "shadow fault"))
    cost = load_costs().ev("shadow_sync")
    # each shadow operation's charge makes the difference; the faster run may take the PIT's
    # tick at another instruction of its disk and network waits, which moves a few exits
    diff = base[1].vcpus[0].cpu.cycles - free[1].vcpus[0].cpu.cycles
    assert abs(diff - faults * cost) <= 2 * cost and diff >= (faults - 2) * cost


def test_two_runs_give_the_same_trace_and_digest():
    a = _run(MACHINES / "hvm-shadow.cfg")
    b = _run(MACHINES / "hvm-shadow.cfg")
    assert [e.to_dict() for e in a[0].trace.iter_all()] == [e.to_dict() for e in b[0].trace.iter_all()]
    assert a[0].digest() == b[0].digest()
    assert a[1].extra["shadow"].snapshot() == b[1].extra["shadow"].snapshot()


def test_shadow_state_snapshot_round_trips(shadow_run):
    sp = shadow_run[1].extra["shadow"]
    snap = sp.snapshot()
    other = ShadowPaging(shadow_run[0], shadow_run[1])
    other.restore(snap)
    assert other.snapshot() == snap
    assert any("shadow" in line for line in sp.describe())


# ---------------------------------------------------------------- scenarios
def test_shadow_scenario_runs_the_guest_on_shadow_paging():
    sc = load_scenario(MACHINES / "shadow.toml")
    assert sc.host.ept and sc.host.vendor == "intel"
    host, xl = start_scenario(sc)
    host.run(LIMIT)
    dom = host.domain_by_name("hvm-shadow")
    assert dom is not None and not dom.hap and "shadow" in dom.extra
    assert CHECKSUM in dom.console_output


def test_amd_scenario_runs_the_pv_and_hvm_guests_with_npt():
    sc = load_scenario(MACHINES / "amd.toml")
    assert sc.host.vendor == "amd" and sc.host.ept
    host, xl = start_scenario(sc)
    host.run(2 * LIMIT)
    for name in ("pv-guest", "hvm-guest"):
        dom = host.domain_by_name(name)
        assert dom is not None and CHECKSUM in dom.console_output, name
    hvm = host.domain_by_name("hvm-guest")
    assert "shadow" not in hvm.extra and hvm.ept_root
    names = {e.data["reason"] for e in _events(host, hvm, "vmexit")}
    assert {"IOIO", "CPUID", "VMMCALL"} <= names and "IO_INSTRUCTION" not in names


# ---------------------------------------------------------------- a kernel that pokes at the shadows
SETUP = r"""
; A tiny HVM kernel that exercises shadow paging on purpose. It starts with
; paging off (hvmloader jumps here), builds 4-level tables, turns paging on,
; and records what it sees at RES and FAULTS for the test to read.
.equ PML4, 0x10000
.equ PDPT, 0x11000
.equ PD,   0x12000
.equ PT,   0x13000
.equ PT2,  0x14000
.equ IDT,  0x30000
.equ IDTR, 0x31000
.equ RES,  0x20000
.equ FAULTS, 0x20100

.org 0x100000
_start:
    mov rsp, 0x9f000
    ; four data pages with a marker each
    mov rdi, 0x50000
    mov rax, 0x1111111111111111
    mov [rdi], rax
    mov rdi, 0x51000
    mov rax, 0x2222222222222222
    mov [rdi], rax
    mov rdi, 0x52000
    mov rax, 0x3333333333333333
    mov [rdi], rax
    mov rdi, 0x53000
    mov rax, 0x4444444444444444
    mov [rdi], rax
    ; 0-2 MiB in 4 KiB pages (identity), 2-4 MiB as one 2 MiB page, 4-6 MiB through PT2
    mov rdi, PML4
    mov rax, PDPT | 3
    mov [rdi], rax
    mov rdi, PDPT
    mov rax, PD | 3
    mov [rdi], rax
    mov rdi, PD
    mov rax, PT | 3
    mov [rdi], rax
    mov rax, 0x200000 | 0x83
    mov [rdi + 8], rax
    mov rax, PT2 | 3
    mov [rdi + 16], rax
    mov rdi, PT
    mov rax, 3
    mov rcx, 512
.fill:
    mov [rdi], rax
    add rax, 0x1000
    add rdi, 8
    dec rcx
    jnz .fill
    mov rdi, PT2
    mov rax, 0x50003
    mov [rdi], rax
    ; an IDT with only the #PF gate
    mov rdi, IDT + 14 * 16
    mov rax, (pf_handler & 0xffff) | (0x08 << 16) | (0x8e << 40) | (((pf_handler >> 16) & 0xffff) << 48)
    mov [rdi], rax
    mov rax, pf_handler >> 32
    mov [rdi + 8], rax
    mov rdi, IDTR
    mov word [rdi], 4095
    mov rax, IDT
    mov [rdi + 2], rax
    lidt [rdi]
    ; 64-bit paging on
    mov rax, 0x20
    mov cr4, rax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 0x900
    wrmsr
    mov rax, PML4
    mov cr3, rax
    mov rax, cr0
    mov rdx, 0x80010000
    or rax, rdx
    mov cr0, rax

"""

CHECKS = r"""
    ; A1: read through PT2[0]
    mov rsi, 0x400000
    mov rax, [rsi]
    mov rdi, RES
    mov [rdi], rax
    ; A2: write our own L1 entry (PT2 is a page table now): PT2[1] -> 0x51000, and use it at once
    mov rdi, PT2 + 8
    mov rax, 0x51003
    mov [rdi], rax
    mov rsi, 0x401000
    mov rax, [rsi]
    mov rdi, RES + 8
    mov [rdi], rax
    ; A3: point PT2[0] elsewhere, invlpg, read again; read the entry back
    mov rdi, PT2
    mov rax, 0x52003
    mov [rdi], rax
    mov rsi, 0x400000
    invlpg [rsi]
    mov rax, [rsi]
    mov rdi, RES + 16
    mov [rdi], rax
    mov rdi, PT2
    mov rax, [rdi]
    mov rdi, RES + 24
    mov [rdi], rax
    ; B1: write to a not-present page
    mov rsi, 0x403000
    mov [rsi], rax
    ; B2: read where there is no L3 table
    mov rsi, 0x8000000000
    mov rax, [rsi]
    ; B3: a read-only page: reading works, writing faults
    mov rdi, PT2 + 32
    mov rax, 0x53001
    mov [rdi], rax
    mov rsi, 0x404000
    mov rax, [rsi]
    mov rdi, RES + 32
    mov [rdi], rax
    mov [rsi], rax
    ; D: one unaligned store across two page tables (PT[511] and PT2[0])
    mov rsi, PT + 0xffc
    mov rax, 0x0005300300000000
    mov [rsi], rax
    mov rsi, 0x400000
    invlpg [rsi]
    mov rax, [rsi]
    mov rdi, RES + 48
    mov [rdi], rax
    ; E: with CR0.WP clear, ring 0 may write a read-only page
    mov rax, cr0
    mov rdx, 0xfffffffffffeffff
    and rax, rdx
    mov cr0, rax
    mov rsi, 0x404008
    mov rax, 0x6666666666666666
    mov [rsi], rax
    mov rax, cr0
    or rax, 0x10000
    mov cr0, rax
    mov rax, [rsi]
    mov rdi, RES + 56
    mov [rdi], rax
    ; F: invlpg of a mapping the shadow holds
    mov rsi, 0x401000
    mov rax, [rsi]
    invlpg [rsi]
    mov rax, [rsi]
    mov rdi, RES + 64
    mov [rdi], rax
{table_outside}
    ; C: write into the 2 MiB page
    mov rsi, 0x203008
    mov rax, 0x5555555555555555
    mov [rsi], rax
    mov rax, cr3
    mov rdi, RES + 40
    mov [rdi], rax
{leaf_outside}
"""

END = r"""
    mov rdi, RES + 0x200
    mov rax, 1
    mov [rdi], rax
    ; power off
    mov dx, 0xb004
    mov ax, 0x2000
    out dx, ax
.stay:
    hlt
    jmp .stay

; #PF: record CR2 and the error code, skip the faulting instruction
pf_handler:
    push rax
    push rbx
    push rcx
    push rdx
    mov rbx, FAULTS
    mov rcx, [rbx]
    mov rax, rcx
    shl rax, 4
    add rax, rbx
    mov rdx, cr2
    mov [rax + 8], rdx
    mov rdx, [rsp + 32]
    mov [rax + 16], rdx
    inc rcx
    mov [rbx], rcx
    add qword [rsp + 40], 16
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 8
    iretq
"""

PROBE = SETUP + CHECKS + END

TABLE_OUTSIDE = """
    ; B4: an L2 entry naming an L1 table outside the guest's memory
    mov rdi, PD + 24
    mov rax, 0x40000003
    mov [rdi], rax
    mov rsi, 0x600000
    mov rax, [rsi]
"""

LEAF_OUTSIDE = """
    ; G: an L1 entry naming a frame outside the guest's memory
    mov rdi, PT2 + 40
    mov rax, 0x40000003
    mov [rdi], rax
    mov rsi, 0x405000
    mov rax, [rsi]
    mov rdi, RES + 48
    mov [rdi], rax
    mov rax, 0x5a5a
    mov [rsi + 8], rax
    mov rax, [rsi + 8]
    mov [rdi + 8], rax
"""

RES, FAULTS, DONE = 0x20000, 0x20100, 0x20200


def _probe(tmp: Path, *, hap: int, table_outside: bool = True, leaf_outside: bool = False,
           host_config: HostConfig | None = None):
    src = PROBE.replace("{table_outside}", TABLE_OUTSIDE if table_outside else "")
    src = src.replace("{leaf_outside}", LEAF_OUTSIDE if leaf_outside else "")
    name = f"probe-{hap}-{int(table_outside)}-{int(leaf_outside)}"
    (tmp / f"{name}.s").write_text(src)
    (tmp / f"{name}.cfg").write_text(f'name = "{name}"\ntype = "hvm"\nmemory = 32\nvcpus = 1\n'
                                     f'kernel = "{name}.s"\nhap = {hap}\non_poweroff = "preserve"\n'
                                     f'on_crash = "preserve"\n')
    host, dom = _run(tmp / f"{name}.cfg", host_config, limit=300_000)

    def rd(gpa: int) -> int:
        return host.mem.read_u64((dom.p2m[gpa >> 12] << 12) + (gpa & 0xFFF))
    return host, dom, rd


def _faults(rd) -> list[tuple[int, int]]:
    return [(rd(FAULTS + 8 + 16 * i), rd(FAULTS + 16 + 16 * i)) for i in range(rd(FAULTS))]


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    return _probe(tmp_path_factory.mktemp("probe"), hap=0)


def test_probe_runs_to_the_end_under_shadow_paging(probe):
    host, dom, rd = probe
    assert dom.state == "shutdown" and rd(DONE) == 1, dom.crash_reason
    assert _exits(host, dom)[("INVLPG", 14)] == 3


def test_guest_write_to_its_own_page_table_is_caught_and_takes_effect(probe):
    host, dom, rd = probe
    assert rd(RES) == 0x1111111111111111
    assert rd(RES + 8) == 0x2222222222222222          # the new entry works at once
    assert rd(RES + 16) == 0x3333333333333333         # a changed entry, after invlpg
    assert rd(RES + 24) == 0x52023                    # its own write, with A set by the access
    emulated = [e for e in _shadow_events(host, dom, "shadow fault") if e.data["result"] == "emulated"]
    assert [e.data["addr"] for e in emulated][:2] == [0x14008, 0x14000]
    syncs = [e for e in _shadow_events(host, dom, "shadow sync") if e.data["addr"] == 0x14008]
    assert syncs and syncs[0].data["level"] == 1 and syncs[0].data["value"] == 0x51003
    assert syncs[0].seq > emulated[0].seq
    protects = {e.data["addr"]: e.data["level"] for e in _shadow_events(host, dom, "shadow write-protect")}
    assert protects == {0x10000: 4, 0x11000: 3, 0x12000: 2, 0x13000: 1, 0x14000: 1}
    sp = dom.extra["shadow"]
    assert sp.pagetables[0x14] == {1}


def test_not_present_pages_give_the_guest_pf_with_its_cr2_and_error_code(probe):
    host, dom, rd = probe
    assert _faults(rd) == [(0x403000, 0x2),           # write, not present
                           (0x8000000000, 0x0),       # read, not present at L4
                           (0x404000, 0x3),           # write to a read-only page: P | W
                           (0x600000, 0x0)]           # its L1 table is outside its memory: not present
    assert rd(RES + 32) == 0x4444444444444444
    injected = _shadow_events(host, dom, "inject #PF")
    assert [(e.data["addr"], e.data["value"]) for e in injected] == _faults(rd)


def test_invlpg_drops_the_shadow_entry(probe):
    host, dom, rd = probe
    assert rd(RES + 64) == 0x2222222222222222
    flushes = [e for e in _shadow_events(host, dom, "shadow flush") if e.data["addr"] == 0x401000]
    assert len(flushes) == 1 and flushes[0].data["result"] == "dropped" and flushes[0].data["level"] == 1
    refill = [e for e in _shadow_events(host, dom, "shadow fault")
              if e.data["addr"] == 0x401000 and e.seq > flushes[0].seq]
    assert refill and refill[0].data["result"] == "fixed"
    # And directly: a present shadow entry is gone after invlpg, and comes back on the next access.
    sp: ShadowPaging = dom.extra["shadow"]
    v = dom.vcpus[0]
    va = 0x203008
    assert sp.shadow_walk(v, va).ok
    sp.invlpg(v, va)
    assert sp.shadow_walk(v, va).ok                   # a splintered 2 MiB page: the entry is kept
    pt2_va = 0x404000
    assert sp.shadow_walk(v, pt2_va).ok
    sp.invlpg(v, pt2_va)
    assert not sp.shadow_walk(v, pt2_va).ok
    assert sp.guest_walk(v, pt2_va).ok                # the guest's own mapping is untouched


def test_unaligned_and_wp0_writes_are_emulated(probe):
    host, dom, rd = probe
    assert rd(RES + 48) == 0x4444444444444444         # PT2[0] -> 0x53000, written across two tables
    assert rd(0x14000) & ~0x60 == 0x53003 and rd(0x13FF8) == 0x1FF003
    assert rd(RES + 56) == 0x6666666666666666         # written with CR0.WP clear
    messages = [e.data["message"] for e in _shadow_events(host, dom, "shadow fault")]
    assert any("CR0.WP clear" in m for m in messages)


def test_superpage_is_splintered_and_cr3_reads_back(probe):
    host, dom, rd = probe
    assert rd(0x203008) == 0x5555555555555555
    assert rd(RES + 40) == 0x10000                    # mov rax, cr3 gives the guest's own value
    new = [e for e in _shadow_events(host, dom, "shadow new table") if e.data["addr"] == 0x200000]
    assert new and "2 MiB" in new[-1].data["message"] and new[-1].data["level"] == 1


def test_probe_sees_the_same_memory_under_ept_and_shadow(tmp_path):
    """A guest table outside RAM ends Xen's own walk of the guest's tables (guest_walk.c,
    map_domain_gfn() finds no page), so the guest gets the same #PF under EPT and shadow."""
    results = []
    for hap in (0, 1):
        host, dom, rd = _probe(tmp_path, hap=hap, table_outside=True)
        assert dom.state == "shutdown", dom.crash_reason
        results.append(([rd(RES + 8 * i) for i in range(10)], _faults(rd), rd(0x14000), rd(0x203008)))
    assert results[0] == results[1]
    assert (0x600000, 0x0) in results[1][1]


@pytest.mark.parametrize("hap", [0, 1])
def test_a_guest_mapping_a_gfn_with_no_ram_reaches_xens_null_handler(tmp_path, hap):
    """sh_page_fault() (mm/shadow/multi.c) and hvm_hap_nested_page_fault() (hvm/hvm.c): a gfn
    with no RAM is p2m_mmio_dm and the access is emulated (handle_mmio); with no ioreq server
    for it, hvmemul_do_io()'s null_handler reads all ones and drops the write. The guest runs on."""
    host, dom, rd = _probe(tmp_path, hap=hap, leaf_outside=True)
    assert dom.state == "shutdown", dom.crash_reason
    assert rd(DONE) == 1
    assert rd(RES + 48) == rd(RES + 56) == 0xFFFF_FFFF_FFFF_FFFF
    mmio = [(e.data["addr"], e.data["dir"], e.data["value"]) for e in host.trace.iter_all()
            if e.kind == "mmio" and e.dom == dom.domid]
    assert mmio == [(0x40000000, "in", 0xFFFF_FFFF_FFFF_FFFF), (0x40000008, "out", 0x5a5a),
                    (0x40000008, "in", 0xFFFF_FFFF_FFFF_FFFF)]
    assert host.mm.pv.check_invariants() == []


# ---------------------------------------------------------------- EPT and shadow agree on any page-table program
_FLAGS = st.sampled_from([0x1, 0x3, 0x21, 0x23, 0x61, 0x63, 0x0, 0x2])   # P, RW, A, D in combinations
_OP = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 5), st.integers(0, 3), _FLAGS),
    st.tuples(st.just("read"), st.integers(0, 5)),
    st.tuples(st.just("write"), st.integers(0, 5), st.integers(1, 2**63)),
    st.tuples(st.just("pte"), st.integers(0, 5)),
)


def _program(ops) -> str:
    """Guest code for a list of operations on PT2's first entries (va 0x400000 + i * 4 KiB)."""
    out = []
    for n, op in enumerate(ops):
        res = RES + 0x300 + 8 * n
        if op[0] == "set":
            _, i, frame, flags = op
            # a correct kernel flushes the TLB entry after changing a mapping
            out += [f"    mov rdi, PT2 + {8 * i}", f"    mov rax, {0x50000 + frame * 0x1000 | flags}",
                    "    mov [rdi], rax", f"    mov rsi, {0x400000 + i * 0x1000}", "    invlpg [rsi]"]
        elif op[0] == "read":
            out += ["    xor eax, eax", f"    mov rsi, {0x400000 + op[1] * 0x1000}", "    mov rax, [rsi]",
                    f"    mov rdi, {res}", "    mov [rdi], rax"]
        elif op[0] == "write":
            out += [f"    mov rsi, {0x400000 + op[1] * 0x1000 + 8}", f"    mov rax, {op[2]}", "    mov [rsi], rax"]
        else:
            out += [f"    mov rdi, PT2 + {8 * op[1]}", "    mov rax, [rdi]", f"    mov rdi, {res}",
                    "    mov [rdi], rax"]
    return "\n".join(out) + "\n"


@settings(max_examples=12, deadline=None, derandomize=True)
@given(st.lists(_OP, min_size=1, max_size=24))
def test_any_page_table_program_sees_the_same_under_ept_and_shadow(ops):
    src = SETUP + _program(ops) + END
    seen = []
    for hap in (1, 0):
        host, xl = boot_host()
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "prog.s").write_text(src)
            (Path(d) / "prog.cfg").write_text(f'name = "prog"\ntype = "hvm"\nmemory = 32\nkernel = "prog.s"\n'
                                              f'hap = {hap}\non_poweroff = "preserve"\non_crash = "preserve"\n')
            dom = xl.create(Path(d) / "prog.cfg")
        host.run(300_000)
        assert dom.state == "shutdown", dom.crash_reason

        def rd(gpa: int) -> int:
            return host.mem.read_u64((dom.p2m[gpa >> 12] << 12) + (gpa & 0xFFF))
        seen.append(([rd(RES + 0x300 + 8 * n) for n in range(len(ops))],     # values and guest PTEs read
                     _faults(rd),                                            # #PF: CR2, error code
                     [rd(0x50000 + f * 0x1000 + 8) for f in range(4)],      # what the writes reached
                     [rd(0x14000 + 8 * i) for i in range(6)]))              # the PTEs' A/D bits at the end
    assert seen[0] == seen[1]
