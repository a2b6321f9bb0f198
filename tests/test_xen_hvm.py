"""HVM guests: CPUID, the hypercall page, VM exits, unclaimed ports, crashes, shadow paging.

tests/data/guests/hvm_script.s is an HVM kernel that finds Xen with CPUID, hands
Xen its hypercall page through the MSR CPUID names, and then runs a script of
hypercalls and probes that the test writes into its memory.
"""

from __future__ import annotations

import pytest

from lab.isa.encoding import decode
from xen_helpers import (CHECKSUM_LINE, EXIT_LINE, OP_CALL, OP_CPUID, OP_IN, OP_LOAD, OP_STORE, OP_USER_CALL,
                         SVM_EXIT, VMX_EXIT, default_run, domid, ept_violations, events, script_guest, signed, small_host,
                         stock_guests)

pytestmark = pytest.mark.machine       # every test here boots a whole machine

STUB, TAIL, INSN = 32, 4096 - 32, 16


def _probe(tmp_path_factory, vendor: str):
    host, xl = small_host(vendor=vendor)
    g = script_guest(xl, tmp_path_factory.mktemp(vendor), "probe", "hvm", memory=16)
    steps = {
        "xen_version": g.add("xen_version", 0, 0),
        "in8": g.add(OP_IN, 0x1234, 1),
        "in16": g.add(OP_IN, 0x1234, 2),
        "in32": g.add(OP_IN, 0x5678, 4),
        "user xen_version": g.add(OP_USER_CALL, 17),
        "user mmu_update": g.add(OP_USER_CALL, 1),
        "user unknown": g.add(OP_USER_CALL, 31),
        "mmu_update": g.add("mmu_update", g.buf(), 1, 0, 0x7FF0),
        "cpuid base+1": g.add(OP_CPUID, 0x40000001, 0),
        "cpuid base+2": g.add(OP_CPUID, 0x40000002, 0),
        "cpuid 1": g.add(OP_CPUID, 1, 0),
        "after": g.add("xen_version", 0, 0),
    }
    g.install()
    host.run()
    return host, g, steps


@pytest.fixture(scope="module")
def intel(tmp_path_factory):
    return _probe(tmp_path_factory, "intel")


@pytest.fixture(scope="module")
def amd(tmp_path_factory):
    return _probe(tmp_path_factory, "amd")


def test_the_script_ran_and_powered_off(intel, amd):
    for host, g, steps in (intel, amd):
        assert g.steps_done == len(steps)
        assert g.dom.state == "shutdown" and g.dom.shutdown_reason == "poweroff"


def test_cpuid_shows_xens_leaves(intel):
    host, g, steps = intel
    raw = g.read(g.addr("xen_leaves"), 24)
    assert raw[4:16] == b"XenVMMXenVMM"
    max_leaf = int.from_bytes(raw[0:4], "little")
    assert max_leaf >= 0x40000002
    assert int.from_bytes(raw[20:24], "little") == 0x40000000      # EBX of 0x40000002: the MSR
    assert g.result(steps["cpuid base+1"]) == (4 << 16) | 23        # Xen 4.23
    assert g.result(steps["cpuid base+2"], 0) == 1                  # one hypercall page
    ecx = g.result(steps["cpuid 1"], 2)
    assert ecx >> 31 & 1 and not ecx >> 5 & 1                       # hypervisor bit; no VMX for the guest
    leaves = [e.data["info"].get("leaf") for e in events(host, "vmexit", dom=g.dom.domid, reason="CPUID")]
    assert leaves[:2] == [0x40000000, 0x40000002]


def _stub(page: bytes, nr: int) -> list:
    first = decode(page, nr * STUB)
    second = decode(page, nr * STUB + INSN)
    return [first, second]


@pytest.mark.parametrize("vendor,trap", [("intel", "vmcall"), ("amd", "vmmcall")])
def test_xen_writes_the_hypercall_page(intel, amd, vendor, trap):
    host, g, _ = intel if vendor == "intel" else amd
    page = g.read(g.addr("hypercall_page"), 4096)
    msr = events(host, "msr", dom=g.dom.domid, dir="write")
    assert msr and msr[0].data["msr"] == 0x40000000 and msr[0].data["value"] == g.addr("hypercall_page")
    assert g.dom.hypercall_page_gpa == g.addr("hypercall_page")
    for nr in list(range(0, 23)) + list(range(24, 56)):
        mov, jmp = _stub(page, nr)
        assert (mov.mnemonic, mov.form, mov.size, mov.a, mov.imm) == ("mov", "ri", 4, 0, nr), nr
        assert jmp.mnemonic == "jmp" and nr * STUB + 2 * INSN + jmp.imm == TAIL, nr
    tail = [decode(page, TAIL), decode(page, TAIL + INSN)]
    assert [i.mnemonic for i in tail] == [trap, "ret"]
    assert [i.mnemonic for i in _stub(page, 23)] == ["ud2", "ud2"]      # HYPERVISOR_iret: ud2


def test_hypercalls_through_the_page_work(intel, amd):
    for host, g, steps in (intel, amd):
        assert g.result(steps["xen_version"]) == (4 << 16) | 23
        assert g.result(steps["after"]) == (4 << 16) | 23
        assert signed(g.result(steps["mmu_update"])) == -38                # PV only
        ev = events(host, "hypercall", dom=g.dom.domid, name="mmu_update")
        assert [(e.data["nr"], e.data["ret"], e.data["errno"]) for e in ev] == [(1, -1, "EPERM"), (1, -38, "ENOSYS")]


def test_a_hypercall_from_ring_3_is_eperm(intel):
    host, g, steps = intel
    assert signed(g.result(steps["user xen_version"])) == -1
    assert signed(g.result(steps["user mmu_update"])) == -1
    assert signed(g.result(steps["user unknown"])) == -1              # the CPL is checked first
    calls = events(host, "hypercall", dom=g.dom.domid)
    user = [e for e in calls if e.data["errno"] == "EPERM"]
    assert [(e.data["name"], e.data["nr"], e.data["ret"]) for e in user] == [
        ("xen_version", 17, -1), ("mmu_update", 1, -1), ("xenoprof_op", 31, -1)]
    assert "CPL 3" in user[0].data["detail"]["why"]
    ring3 = [e for e in events(host, "ring", dom=g.dom.domid) if e.data["to_cpl"] == 3]
    assert ring3 and all(e.data["root"] is False for e in ring3)


def test_unclaimed_ports_read_all_ones(intel):
    host, g, steps = intel
    assert g.result(steps["in8"]) == 0xFF
    assert g.result(steps["in16"]) == 0xFFFF
    assert g.result(steps["in32"]) == 0xFFFF_FFFF
    ins = [e for e in events(host, "ioport", dom=g.dom.domid) if e.data["dir"] == "in"]
    assert [(e.data["port"], e.data["size"], e.data["value"], e.data["device"]) for e in ins] == [
        (0x1234, 1, 0xFF, "none"), (0x1234, 2, 0xFFFF, "none"), (0x5678, 4, 0xFFFF_FFFF, "none")]


def test_exit_numbers_by_vendor(intel, amd):
    for (host, g, _), table, names in ((intel, VMX_EXIT, {"VMCALL": 18, "IO_INSTRUCTION": 30, "CPUID": 10,
                                                              "MSR_WRITE": 32}),
                                       (amd, SVM_EXIT, {"VMMCALL": 0x81, "IOIO": 0x7B, "CPUID": 0x72,
                                                        "MSR": 0x7C})):
        exits = events(host, "vmexit", dom=g.dom.domid)
        nrs = {e.data["nr"] for e in exits}
        assert set(names.values()) <= nrs
        if table is VMX_EXIT:
            assert all(table[e.data["reason"]] == e.data["nr"] for e in exits)
        else:
            assert 18 not in nrs and 30 not in nrs


# ---------------------------------------------------------------- crashes
@pytest.fixture(scope="module")
def crashes(tmp_path_factory):
    d = tmp_path_factory.mktemp("crash")
    host, xl = small_host()
    pv, hvm = stock_guests(xl, d)
    ept = script_guest(xl, d, "ept-violator", "hvm", memory=16)
    ept.add("xen_version", 0, 0)
    ept.add(OP_LOAD, 0x4000_0000)                        # 1 GiB: no RAM, no ioreq server
    ept.add("xen_version", 0, 0)
    ept.install()
    tf = script_guest(xl, d, "triple-faulter", "hvm", memory=16)
    tf.add("xen_version", 0, 0)
    tf.add(OP_CALL, tf.addr("hypercall_page", 23 * 32))  # the iret stub: ud2, and no IDT
    tf.add("xen_version", 0, 0)
    tf.install()
    host.run()
    return host, xl, pv, hvm, ept, tf


def test_an_ept_violation_outside_ram_is_emulated_not_a_crash(crashes):
    """hvm_hap_nested_page_fault() (arch/x86/hvm/hvm.c): the gfn has no RAM, so it is p2m_mmio_dm
    (ept_get_entry()'s default type) and handle_mmio() emulates the load; no ioreq server claims
    1 GiB, so Xen's null_handler (hvm/emulate.c) answers all ones and the guest runs on."""
    host, _, _, _, ept, _ = crashes
    dom = ept.dom
    assert dom.state == "shutdown" and ept.steps_done == 3
    assert ept.result(1) == 0xFFFF_FFFF_FFFF_FFFF
    exits = events(host, "vmexit", dom=dom.domid, reason="EPT_VIOLATION")
    assert len(exits) == 1 and exits[0].data["nr"] == 48
    pt = events(host, "pagetable", dom=dom.domid, op="ept violation")
    assert pt and pt[0].data["addr"] == 0x4000_0000 and pt[0].data["result"] == "mmio"
    mmio = events(host, "mmio", dom=dom.domid)
    assert [(e.data["addr"], e.data["size"], e.data["dir"]) for e in mmio] == [(0x4000_0000, 8, "in")]
    # nothing of it reached the device model (its one ioreq is the ACPI power-off port)
    assert events(host, "ioreq", dom=dom.domid, type="IOREQ_TYPE_COPY") == []
    assert not any("EPT violation" in line for line in host.dmesg)


def test_a_triple_fault_crashes_that_domain(crashes):
    host, _, _, _, _, tf = crashes
    dom = tf.dom
    assert dom.state == "crashed" and tf.steps_done == 1
    assert dom.crash_reason.startswith("triple fault")
    exits = events(host, "vmexit", dom=dom.domid, reason="TRIPLE_FAULT")
    assert len(exits) == 1 and exits[0].data["nr"] == 2
    traps = [e.data["mnemonic"] for e in events(host, "trap", dom=dom.domid)]
    assert traps[0] == "#UD"


def test_crashed_guests_leave_the_others_running_to_the_end(crashes):
    host, xl, pv, hvm, ept, tf = crashes
    for g in (pv, hvm):
        assert g.state == "shutdown" and g.shutdown_reason == "poweroff"
        assert CHECKSUM_LINE in g.console_output and EXIT_LINE in g.console_output
    assert host.domains[0].alive
    assert sorted(e.data["name"] for e in events(host, "domain", op="crash")) == ["triple-faulter"]
    states = {ln.split()[0]: ln.split()[4] for ln in xl.list().splitlines()[1:]}
    assert states["triple-faulter"] == "---sc-" and states["ept-violator"] == "---s--"
    assert states["pv-guest"] == states["hvm-guest"] == "---s--"
    assert ept_violations(host, hvm) == []
    assert host.mm.pv.check_invariants() == []


# ---------------------------------------------------------------- system calls and paging
def test_hvm_system_calls_cause_no_vm_exits():
    host, _ = default_run()
    hvm = domid(host, "hvm-guest")
    evs = [e for e in host.trace.iter_all() if e.dom == hvm]
    starts = [i for i, e in enumerate(evs) if e.kind == "syscall"]
    assert len(starts) == 76
    getpid = 0
    for i in starts:
        sc = evs[i]
        assert sc.data["via"] == "syscall"                           # straight to the guest kernel
        j = next((k for k in range(i + 1, len(evs)) if evs[k].kind in ("sysret", "syscall")), len(evs))
        inside = evs[i + 1:j]
        if sc.data["nr"] == 39:
            getpid += 1
            assert not [e for e in inside if e.kind in ("vmexit", "hypercall")]
            assert j < len(evs) and evs[j].kind == "sysret"
        # whatever exits a syscall causes come from the work it does: console output, the
        # disk's and the network card's registers, cpuid for the domain id when the card comes
        # up, the local APIC's timer (MMIO, an EPT violation Xen emulates) armed for the reply's
        # deadline and stopped when it comes, and hlt while the ping waits for it
        assert all(e.data["reason"] in ("IO_INSTRUCTION", "HLT", "CPUID", "EPT_VIOLATION")
                   for e in inside if e.kind == "vmexit")
    assert getpid == 64
    assert not events(host, "trap", dom=hvm, mnemonic="syscall")


@pytest.mark.parametrize("hap,host_ept", [(0, True), (1, False)])
def test_shadow_paging_runs_the_same_guest(tmp_path, hap, host_ept):
    host, xl = small_host(ept=host_ept)
    from xen_helpers import create
    shadow = create(xl, tmp_path, "shadowed", "hvm", hap=hap)
    assert shadow.ept_root == 0 and "shadow" in shadow.extra
    host.run()
    assert CHECKSUM_LINE in shadow.console_output and EXIT_LINE in shadow.console_output
    exits = events(host, "vmexit", dom=shadow.domid)
    reasons = {e.data["reason"] for e in exits}
    assert "CR_ACCESS" in reasons and "EXCEPTION_NMI" in reasons
    assert "EPT_VIOLATION" not in reasons
    assert all(e.data["nr"] == VMX_EXIT[e.data["reason"]] for e in exits)
    # With EPT the same guest never exits for CR3 or page faults.
    ept_host, _ = default_run()
    ept_reasons = {e.data["reason"] for e in events(ept_host, "vmexit", dom=domid(ept_host, "hvm-guest"))}
    assert not {"CR_ACCESS", "EXCEPTION_NMI", "INVLPG"} & ept_reasons


# ---------------------------------------------------------------- xl.cfg's hpet
HPET_BASE, HPET_CFG_REG, HPET_CAPABILITY = 0xFED0_0000, 0xFED0_0010, 0x00F4_2400_8086_A201


def test_hpet_0_in_xl_cfg_clears_hvm_param_hpet_enabled_and_xen_answers_all_ones(tmp_path):
    """libxl's hvm_set_conf_params() writes xl.cfg's hpet (true unless set, libxl_create.c) to
    HVM_PARAM_HPET_ENABLED; hpet.c's handler still claims its range (hpet_range()), but with the
    param clear hpet_read() answers ~0 and hpet_write() drops the write, in Xen, never the
    device model."""
    from lab.xen.abi.hvm import HVM_PARAM_HPET_ENABLED
    host, xl = small_host()
    guests = {}
    for name, keys in (("with-hpet", {}), ("no-hpet", {"hpet": 0})):
        g = script_guest(xl, tmp_path, name, "hvm", memory=16, **keys)
        g.add(OP_LOAD, HPET_BASE)
        g.add(OP_STORE, HPET_CFG_REG, 1)                 # ENABLE
        g.add(OP_LOAD, HPET_CFG_REG)
        g.install()
        guests[name] = g
    host.run()
    on, off = guests["with-hpet"], guests["no-hpet"]
    assert on.dom.config.hpet is True and off.dom.config.hpet is False
    assert on.dom.hvm_params[HVM_PARAM_HPET_ENABLED] == 1 and off.dom.hvm_params[HVM_PARAM_HPET_ENABLED] == 0
    assert on.steps_done == off.steps_done == 3
    assert on.result(0) == HPET_CAPABILITY and on.result(2) == 1
    assert off.result(0) == off.result(2) == 0xFFFF_FFFF_FFFF_FFFF
    assert off.dom.devices["hpet"].config == 0            # the write was dropped
    mmio = events(host, "mmio", dom=off.dom.domid)
    assert len(mmio) == 3
    assert all(e.data["emulator"] == "xen" and e.data["device"].startswith("vHPET") for e in mmio)


# ---------------------------------------------------------------- the PIC cascade
def _pic_out(dom, port: int, value: int) -> None:
    dom.devices["vpic_io"].port_write(None, dom.vcpus[0], port, 1, value)


def test_an_irq_on_the_slave_pic_raises_irq_2_on_the_master_and_is_acknowledged_there(tmp_path):
    """vpic.c vpic_update_int_output(): the slave's INT output holds the master's IRQ 2 (level
    while it has an unmasked request) and drops when it has none; vpic_ack_pending_irq(): an
    acknowledged IRQ 2 is the slave's highest request, with the slave's vector."""
    from lab.xen.vdev.vpic import raise_isa_irq
    host, xl = small_host()
    g = script_guest(xl, tmp_path, "cascade", "hvm", memory=16)
    dom, v = g.dom, g.dom.vcpus[0]
    host.pause(dom)
    master, slave, intr = dom.devices["vpic"], dom.devices["vpic_io"].slave, v.cpu.irq_source
    for port, words in ((0x20, (0x11, 0x20, 0x04, 0x01, 0xFB)),       # master: vectors 0x20, all but IRQ 2 masked
                        (0xA0, (0x11, 0x28, 0x02, 0x01, 0xFF))):      # slave: vectors 0x28, all masked
        for i, w in enumerate(words):
            _pic_out(dom, port + (i > 0), w)
    assert raise_isa_irq(dom, 10) == 0x2A
    assert not master.irr & 4 and intr.pending() is None              # masked on the slave: no output
    _pic_out(dom, 0xA1, 0xFB)                                         # unmask IRQ 10
    assert master.irr & 4 and master.waiting and intr.pending() == 0x2A
    assert intr.ack() == 0x2A
    assert master.isr == 4 and slave.isr == 4 and slave.irr == 0 and not master.irr & 4
    raise_isa_irq(dom, 9)                                              # masked on the slave
    raise_isa_irq(dom, 10)
    assert not master.irr & 4 and intr.pending() is None              # the slave's IRQ 10 in service holds it
    _pic_out(dom, 0xA0, 0x20)                                         # EOI on the slave: its output rises
    assert master.irr & 4 and intr.pending() is None                  # the master's IRQ 2 in service holds it
    _pic_out(dom, 0x20, 0x20)                                         # EOI on the master
    assert intr.pending() == 0x2A
    _pic_out(dom, 0xA1, 0xFF)                                         # masking the request drops the line
    assert not master.irr & 4 and intr.pending() is None
    assert raise_isa_irq(dom, 3) == 0x23 and raise_isa_irq(dom, 16) is None


def test_the_intercept_table_dispatches_by_port_and_follows_every_change_of_its_handlers():
    from types import SimpleNamespace

    from lab.xen.vdev.intercept import IoIntercept, port_io

    class Device:                       # a device Xen emulates: reads answer the port's low byte
        def __init__(self, name: str, base: int = 0) -> None:
            self.name, self.at = name, base

        def base(self, dom) -> int:
            return self.at

        def port_read(self, host, v, port, size):
            return port & 0xFF

    tab = IoIntercept()
    dom = SimpleNamespace(devices={"intercept": tab, "a": Device("a"), "b": Device("b"), "pm": Device("pm", 0x100)})
    v = SimpleNamespace(domain=dom)
    tab.register_portio_handler(0x40, 4, "a")
    tab.register_movable_portio_handler("pm", 8, 4)
    assert port_io(None, v, 0x42, 1, "in", 0) == (0x42, "a")
    assert port_io(None, v, 0x44, 1, "in", 0) is None           # past a's range
    assert port_io(None, v, 0x43, 2, "in", 0) is None           # across its end (hvm_portio_accept)
    assert port_io(None, v, 0x108, 4, "in", 0) == (0x08, "pm")
    dom.devices["pm"].at = 0x200                                 # its HVM param moved it
    assert port_io(None, v, 0x108, 4, "in", 0) is None
    assert port_io(None, v, 0x208, 4, "in", 0) == (0x08, "pm")
    tab.register_portio_handler(0x44, 1, "b")                   # registered after a lookup there
    assert port_io(None, v, 0x44, 1, "in", 0) == (0x44, "b")
    tab.portio[:] = tab.portio[1:]                               # a restore to a table without "a"
    assert port_io(None, v, 0x42, 1, "in", 0) is None
    assert [h.device for h in tab.port_handlers(0x44)] == ["pm", "b"]   # registration order
    for port in range(0x10000):                                  # a guest trying every port
        tab.port_handlers(port)
    assert len(tab._by_port) <= 1024
    assert port_io(None, v, 0x44, 1, "in", 0) == (0x44, "b")
