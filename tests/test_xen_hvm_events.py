"""Event channels delivered to HVM vCPUs: add_to_physmap, the callback IRQ, the PV timer.

The guest is a small HVM kernel written here (paging off, so its addresses are
guest-physical). It maps shared_info into its physmap with
XENMEM_add_to_physmap, tells Xen how to raise its upcall (HVM_PARAM_CALLBACK_IRQ
or HVMOP_set_evtchn_upcall_vector), binds VIRQ_TIMER, arms a single-shot
timer, waits, and counts the interrupts its IDT handler takes. What it does
is chosen by the words the test pokes into its `config` block before it runs.

Reference values are Xen's (public/memory.h, public/hvm/params.h,
public/hvm/hvm_op.h, public/vcpu.h, public/event_channel.h), not lab.xen.abi.
"""

from __future__ import annotations

import struct

import pytest

from xen_helpers import DOMID_SELF, create, events, hypercall, small_host

pytestmark = pytest.mark.machine       # every test here boots a whole machine

XENMEM_add_to_physmap = 7
XENMAPSPACE_shared_info, XENMAPSPACE_grant_table, XENMAPSPACE_gmfn_foreign = 0, 1, 4
HVMOP_set_param, HVMOP_set_evtchn_upcall_vector = 0, 23
HVM_PARAM_CALLBACK_IRQ = 0
VIRQ_TIMER = 0
CALLBACK_VECTOR = 0xF3                         # Linux's HYPERVISOR_CALLBACK_VECTOR
PIC_BASE = 0x20                                # where the kernel puts the PIC's vectors
PLATFORM_IRQ = 5                               # the Xen platform device (slot 3, INTA -> link 3 -> IRQ 5)
EPERM, ESRCH, EINVAL, EACCES, ENOSYS = 1, 3, 22, 13, 38
GTF_permit_access, GTF_reading, GTF_writing = 1, 0x8, 0x10

# config flags
F_CLI_SPIN = 1          # wait with IF clear (spinning), then sti
F_UPCALL_VECTOR = 2     # HVMOP_set_evtchn_upcall_vector instead of HVM_PARAM_CALLBACK_IRQ; EOI through x2APIC
F_GRANT = 4             # also map grant-table frame 0 and write grant entry 8
F_PIC = 8               # program the PIC (GSI / INTx callbacks)
F_STAY = 16             # stay alive at the end (hlt) instead of powering off

KERNEL = r"""
; A test HVM kernel: event-channel upcalls as an interrupt.
.data
.org 0x300000
.bss
.org 0x340000

.text
.org 0x200000
_start:
    mov rsp, stack_top
    mov eax, 0x40000002              ; Xen's leaf: ebx = the hypercall-page MSR
    xor ecx, ecx
    cpuid
    mov ecx, ebx
    lea rax, [rip + hypercall_page]
    mov rdx, rax
    shr rdx, 32
    wrmsr
    ; IDT: the PIC's eight vectors and the upcall vector
    mov rdi, 0x20
.pic_gates:
    lea rsi, [rip + pic_irq]
    push rdi
    call set_gate
    pop rdi
    inc rdi
    cmp rdi, 0x28
    jne .pic_gates
    mov rdi, 0xf3
    lea rsi, [rip + upcall]
    call set_gate
    lea rax, [rip + idt]
    mov [rip + idt_ptr + 2], rax
    lidt [rip + idt_ptr]
    mov rax, [rip + cfg_flags]
    test rax, 8
    jz .no_pic
    mov al, 0x11                     ; ICW1: edge, cascade, ICW4 needed
    out 0x20, al
    mov al, 0x20                     ; ICW2: vectors 0x20-0x27
    out 0x21, al
    mov al, 0x04                     ; ICW3
    out 0x21, al
    mov al, 0x01                     ; ICW4: 8086 mode
    out 0x21, al
    mov al, 0xdf                     ; OCW1: only line 5 (the platform device) unmasked
    out 0x21, al
.no_pic:
    ; shared_info into our physmap
    lea rsi, [rip + req]
    mov word [rsi], 0x7ff0           ; DOMID_SELF
    mov word [rsi + 2], 0
    mov dword [rsi + 4], 0           ; XENMAPSPACE_shared_info
    mov qword [rsi + 8], 0
    mov rax, [rip + cfg_shinfo_gpfn]
    mov [rsi + 16], rax
    mov rdi, 7                       ; XENMEM_add_to_physmap
    call hypercall_page + 12*32
    mov [rip + res_shinfo], rax
    mov rax, [rip + cfg_shinfo_gpfn]
    shl rax, 12
    mov [rip + shinfo], rax
    mov rax, [rip + cfg_flags]
    test rax, 4
    jz .no_grant
    lea rsi, [rip + req]
    mov dword [rsi + 4], 1           ; XENMAPSPACE_grant_table, frame 0
    mov qword [rsi + 8], 0
    mov rax, [rip + cfg_gnt_gpfn]
    mov [rsi + 16], rax
    mov rdi, 7
    call hypercall_page + 12*32
    mov [rip + res_grant], rax
    mov rdi, [rip + cfg_gnt_gpfn]
    shl rdi, 12
    add rdi, 64                      ; grant entry 8
    lea rax, [rip + granted_page]
    shr rax, 12
    mov dword [rdi + 4], eax         ; frame (a gfn)
    mov word [rdi + 2], 0            ; to domain 0
    mov word [rdi], 1                ; GTF_permit_access, last
    mov rax, 0x1122334455667788
    mov [rip + granted_page], rax
.no_grant:
    ; how the upcall arrives
    mov rax, [rip + cfg_flags]
    test rax, 2
    jnz .vector
    lea rsi, [rip + param]
    mov word [rsi], 0x7ff0
    mov dword [rsi + 4], 0           ; HVM_PARAM_CALLBACK_IRQ
    mov rax, [rip + cfg_via]
    mov [rsi + 8], rax
    mov rdi, 0                       ; HVMOP_set_param
    call hypercall_page + 34*32
    mov [rip + res_via], rax
    jmp .bind
.vector:
    mov ecx, 0x1b                    ; IA32_APIC_BASE: x2APIC mode, for the EOI MSR
    rdmsr
    or eax, 0xc00
    wrmsr
    lea rsi, [rip + param]
    mov dword [rsi], 0               ; vcpu 0
    mov byte [rsi + 4], 0xf3
    mov rdi, 23                      ; HVMOP_set_evtchn_upcall_vector
    call hypercall_page + 34*32
    mov [rip + res_via], rax
.bind:
    lea rsi, [rip + bind]
    mov dword [rsi], 0               ; VIRQ_TIMER
    mov dword [rsi + 4], 0           ; vcpu 0
    mov rdi, 1                       ; EVTCHNOP_bind_virq
    call hypercall_page + 32*32
    mov [rip + res_bind], rax
    mov eax, [rip + bind + 8]
    mov [rip + timer_port], rax
    ; a single-shot timer: now (ns; the host runs at 2000 MHz) + cfg_delay_ns
    rdtsc
    shl rdx, 32
    or rax, rdx
    shr rax, 1
    add rax, [rip + cfg_delay_ns]
    lea rdx, [rip + sshot]
    mov [rdx], rax
    mov dword [rdx + 8], 0
    mov rdi, 8                       ; VCPUOP_set_singleshot_timer
    xor esi, esi
    call hypercall_page + 24*32
    mov [rip + res_timer], rax
    mov rax, [rip + cfg_flags]
    test rax, 1
    jnz .spin
.wait:
    cli
    mov rax, [rip + timer_seen]
    test rax, rax
    jnz .done
    sti
    mov rdi, 1                       ; SCHEDOP_block
    xor esi, esi
    call hypercall_page + 29*32
    inc qword [rip + blocks]
    jmp .wait
.spin:
    cli
    mov rcx, [rip + cfg_spin]
.spin_loop:
    dec rcx
    jnz .spin_loop
    mov rax, [rip + upcalls]
    mov [rip + upcalls_with_if_clear], rax
    mov rax, [rip + shinfo]
    movzx eax, byte [rax]
    mov [rip + pending_with_if_clear], rax
    sti
    nop
    mov rax, [rip + upcalls]
    mov [rip + upcalls_after_sti], rax
.done:
    mov rax, [rip + cfg_flags]
    test rax, 16
    jz .off
.stay:
    sti
    hlt
    jmp .stay
.off:
    mov dx, 0xb004                   ; ACPI PM1a_CNT (V1): power-off
    mov ax, 0x2000
    out dx, ax
.hang:
    jmp .hang

; set_gate(rdi = vector, rsi = handler): a present DPL 0 interrupt gate, CS 0x08
set_gate:
    lea rdx, [rip + idt]
    shl rdi, 4
    add rdi, rdx
    mov rax, rsi
    and rax, 0xffff
    mov rcx, 0x08
    shl rcx, 16
    or rax, rcx
    mov rcx, 0x8e
    shl rcx, 40
    or rax, rcx
    mov rcx, rsi
    shr rcx, 16
    and rcx, 0xffff
    shl rcx, 48
    or rax, rcx
    mov [rdi], rax
    mov rcx, rsi
    shr rcx, 32
    mov [rdi + 8], rcx
    ret

; scan(): clear upcall_pending first, then take and clear the pending bits (word 0)
scan:
    mov rcx, [rip + shinfo]
    mov byte [rcx], 0                ; evtchn_upcall_pending = 0
    mov qword [rcx + 8], 0           ; evtchn_pending_sel
    mov rax, [rcx + 2048]            ; evtchn_pending[0]
    mov qword [rcx + 2048], 0
    or [rip + seen], rax
    mov rdx, [rip + timer_port]
    mov rcx, rdx
    shr rax, cl
    test rax, 1
    jz .none
    inc qword [rip + timer_seen]
.none:
    inc qword [rip + upcalls]
    ret

upcall:
    push rax
    push rcx
    push rdx
    call scan
    mov rax, [rip + cfg_flags]
    test rax, 2
    jz .no_eoi
    mov ecx, 0x80b                   ; x2APIC EOI
    xor eax, eax
    xor edx, edx
    wrmsr
.no_eoi:
    pop rdx
    pop rcx
    pop rax
    iretq

pic_irq:
    push rax
    push rcx
    push rdx
    call scan
    inc qword [rip + pic_irqs]
    mov al, 0x20                     ; non-specific EOI to the PIC
    out 0x20, al
    pop rdx
    pop rcx
    pop rax
    iretq

.align 4096
hypercall_page:
    .zero 4096

.data
config:
cfg_flags:       .quad 0
cfg_via:         .quad 0
cfg_shinfo_gpfn: .quad 0
cfg_gnt_gpfn:    .quad 0
cfg_delay_ns:    .quad 0
cfg_spin:        .quad 0
results:
res_shinfo:      .quad 0x5a5a
res_grant:       .quad 0x5a5a
res_via:         .quad 0x5a5a
res_bind:        .quad 0x5a5a
res_timer:       .quad 0x5a5a
timer_port:      .quad 0
upcalls:         .quad 0
timer_seen:      .quad 0
pic_irqs:        .quad 0
seen:            .quad 0
blocks:          .quad 0
upcalls_with_if_clear: .quad 0x5a5a
pending_with_if_clear: .quad 0x5a5a
upcalls_after_sti:     .quad 0x5a5a
shinfo:          .quad 0
req:             .quad 0, 0, 0
param:           .quad 0, 0
bind:            .dword 0, 0, 0, 0
sshot:           .quad 0, 0
idt_ptr:         .word 4095
                 .quad 0
.align 4096
idt:             .zero 4096
.align 4096
shinfo_page:     .zero 4096
.align 4096
granted_page:    .zero 4096

.bss
.align 4096
stack:           .zero 16384
stack_top:
"""

RESULTS = ["res_shinfo", "res_grant", "res_via", "res_bind", "res_timer", "timer_port", "upcalls", "timer_seen",
           "pic_irqs", "seen", "blocks", "upcalls_with_if_clear", "pending_with_if_clear", "upcalls_after_sti"]


def _signed(x: int) -> int:
    return x - (1 << 64) if x >> 63 else x


class Guest:
    def __init__(self, host, xl, tmp_path, name: str, *, flags: int, via: int = 0, delay_ns: int = 200_000,
                 spin: int = 0, gnt_gpfn: int | None = None, shinfo_in_ram: bool = True, hap: int = 1,
                 type_: str = "hvm") -> None:
        src = tmp_path / "hvm_events.s"
        src.write_text(KERNEL)
        self.host = host
        self.dom = create(xl, tmp_path, name, type_, kernel=src, memory=16, hap=hap)
        self.sym = self.dom.images["kernel"].symbols
        ram_end = len(self.dom.p2m)
        self.shinfo_gpfn = self.sym["shinfo_page"] >> 12 if shinfo_in_ram else ram_end + 1
        self.gnt_gpfn = ram_end + 4 if gnt_gpfn is None else gnt_gpfn
        self.ram_frame = self.dom.p2m[self.shinfo_gpfn] if shinfo_in_ram else None
        for name_, value in (("cfg_flags", flags), ("cfg_via", via), ("cfg_shinfo_gpfn", self.shinfo_gpfn),
                             ("cfg_gnt_gpfn", self.gnt_gpfn), ("cfg_delay_ns", delay_ns), ("cfg_spin", spin)):
            self.poke(self.sym[name_], struct.pack("<Q", value))

    def poke(self, gpa: int, data: bytes) -> None:
        mfn = self.dom.gfn_to_mfn(gpa >> 12)
        self.host.mem.write((mfn << 12) + (gpa & 0xFFF), data)

    def peek(self, gpa: int, n: int) -> bytes:
        mfn = self.dom.gfn_to_mfn(gpa >> 12)
        return self.host.mem.read((mfn << 12) + (gpa & 0xFFF), n)

    def __getitem__(self, name: str) -> int:
        return _signed(int.from_bytes(self.peek(self.sym[name], 8), "little"))

    @property
    def vcpu(self):
        return self.dom.vcpus[0]


def _run(flags, tmp_path, **kw):
    host, xl = small_host(ept=kw.pop("ept", True))
    g = Guest(host, xl, tmp_path, "ev", flags=flags, **kw)
    host.run(max_insns=3_000_000)
    return host, xl, g


def _interrupts(host, g, prefix: str = "evtchn upcall"):
    return [e for e in events(host, "interrupt", dom=g.dom.domid) if str(e.data.get("source", "")).startswith(prefix)]


VECTOR_VIA = (2 << 56) | CALLBACK_VECTOR


# ---------------------------------------------------------------- the callback vector
@pytest.fixture(scope="module")
def vector_run(tmp_path_factory):
    return _run(0, tmp_path_factory.mktemp("vector"), via=VECTOR_VIA)


def test_shared_info_appears_at_the_gpfn(vector_run):
    host, _, g = vector_run
    assert g["res_shinfo"] == 0
    assert g.dom.gfn_to_mfn(g.shinfo_gpfn) == g.dom.shared_info_mfn
    assert host.mm.pv.m2p.get(g.dom.shared_info_mfn) == g.shinfo_gpfn
    # the EPT now sends that gfn to Xen's frame
    assert host.guest_phys_to_machine(g.dom.domid, g.shinfo_gpfn << 12) == g.dom.shared_info_mfn << 12
    # the RAM page that was there went back to Xen: freed, not leaked, not the domain's any more
    assert g.ram_frame != g.dom.shared_info_mfn
    assert host.mm.pv.pages[g.ram_frame].owner is None
    assert g.ram_frame in host.free_frames
    assert g.ram_frame not in g.dom.extra.get("frames", [])
    assert g.dom.mem_pages == g.dom.max_pages - 1
    assert host.mm.pv.check_invariants() == []


def test_timer_upcall_arrives_at_the_callback_vector(vector_run):
    host, _, g = vector_run
    assert g.dom.state == "shutdown" and g.dom.shutdown_reason == "poweroff"
    assert (g["res_via"], g["res_bind"], g["res_timer"]) == (0, 0, 0)
    assert g.dom.callback_via_type == "vector" and g.dom.callback_via == CALLBACK_VECTOR
    assert g.dom.hvm_params[HVM_PARAM_CALLBACK_IRQ] == VECTOR_VIA
    port = g["timer_port"]
    assert port > 0
    assert g["timer_seen"] == 1 and g["seen"] >> port & 1
    assert g["blocks"] >= 1                             # it slept in SCHEDOP_block and was woken
    assert g["pic_irqs"] == 0
    # Xen raised it, and the CPU took it through the IDT at 0xf3
    ups = _interrupts(host, g)
    assert [e.data["vector"] for e in ups] and all(e.data["vector"] == CALLBACK_VECTOR for e in ups)
    assert any("callback vector 0xf3" in e.data["source"] for e in ups)
    blocks = [e for e in events(host, "sched", dom=g.dom.domid, op="block") if e.data["reason"] == "SCHEDOP_block"]
    wakes = events(host, "sched", dom=g.dom.domid, op="wake", reason="event pending")
    assert blocks and wakes and wakes[0].seq > blocks[0].seq
    assert g["upcalls"] >= 1


def test_one_raise_while_upcall_pending_stays_set(tmp_path):
    """While evtchn_upcall_pending is set, more events raise nothing (vcpu_mark_events_pending)."""
    host, xl = small_host()
    g = Guest(host, xl, tmp_path, "ev", flags=F_CLI_SPIN, via=VECTOR_VIA, delay_ns=1000, spin=1)
    host.run_until(lambda e: e.kind == "hypercall" and e.data["name"] == "vcpu_op" and e.dom == g.dom.domid)
    ev = host.evtchn
    before = len(_interrupts(host, g))
    ports = [ev.alloc_unbound(g.dom.domid, g.dom.domid) for _ in range(70)]
    a, b = ports[0], ports[-1]
    assert a // 64 != b // 64                              # two selector words: each is new
    ev.set_pending(g.dom.domid, a)
    ev.set_pending(g.dom.domid, b)
    assert len(_interrupts(host, g)) == before + 1
    assert host.mem.read_u64((g.dom.shared_info_mfn << 12) + 8) == 0b11
    # the guest clears the flag: the next event raises again
    g.host.mem.write(g.dom.shared_info_mfn << 12, b"\x00")
    g.host.mem.write_u64((g.dom.shared_info_mfn << 12) + 2048, 0)
    g.host.mem.write_u64((g.dom.shared_info_mfn << 12) + 8, 0)
    ev.set_pending(g.dom.domid, a)
    assert len(_interrupts(host, g)) == before + 2


# ---------------------------------------------------------------- IF clear
def test_events_wait_for_interrupts_to_be_enabled(tmp_path):
    host, _, g = _run(F_CLI_SPIN, tmp_path, via=VECTOR_VIA, delay_ns=2_000, spin=100_000)
    assert g.dom.state == "shutdown"
    assert g["timer_port"] > 0
    # the timer fired while IF was clear: pending in shared_info, but no interrupt taken
    raised = [e for e in _interrupts(host, g) if e.data["source"] == "evtchn upcall: callback vector 0xf3"]
    assert raised, "Xen raised the upcall"
    assert g["pending_with_if_clear"] == 1
    assert g["upcalls_with_if_clear"] == 0
    # after sti (and the one instruction it shields) the interrupt came in
    assert g["upcalls_after_sti"] == 1
    assert g["timer_seen"] == 1


# ---------------------------------------------------------------- GSI / INTx through the vPIC
@pytest.mark.parametrize("via,name", [(PLATFORM_IRQ, "GSI 5"), ((1 << 56) | (3 << 11), "PCI INTx 00:03.0 INTA")])
def test_gsi_callback_through_the_emulated_pic(tmp_path, via, name):
    host, _, g = _run(F_PIC, tmp_path, via=via)
    assert g.dom.state == "shutdown" and g.dom.shutdown_reason == "poweroff"
    assert g["res_via"] == 0
    assert g.dom.callback_via_type == ("gsi" if via == PLATFORM_IRQ else "pci_intx")
    assert g["timer_seen"] == 1 and g["pic_irqs"] >= 1
    raised = _interrupts(host, g)
    assert raised and raised[0].data["vector"] == PIC_BASE + PLATFORM_IRQ
    assert name in raised[0].data["source"] and "emulated PIC" in raised[0].data["source"]
    taken = [e for e in events(host, "interrupt", dom=g.dom.domid) if e.data.get("source") == "pic"]
    assert taken and taken[0].data["vector"] == PIC_BASE + PLATFORM_IRQ and taken[0].seq > raised[0].seq
    assert any(f"callback via changed to {'GSI 5' if via == PLATFORM_IRQ else 'PCI INTx Dev 0x03 IntA'}" in line
               for line in host.dmesg)


def test_no_callback_means_no_interrupt(tmp_path):
    host, _, g = _run(F_CLI_SPIN, tmp_path, via=0, delay_ns=2_000, spin=100_000)
    assert g.dom.callback_via_type == "none"
    assert g["pending_with_if_clear"] == 1                 # the event is there to poll
    assert g["upcalls_after_sti"] == 0 and g["upcalls"] == 0
    assert _interrupts(host, g) == []


# ---------------------------------------------------------------- per-vCPU vector through the vLAPIC
def test_per_vcpu_upcall_vector_needs_an_eoi(tmp_path):
    host, _, g = _run(F_UPCALL_VECTOR, tmp_path)
    assert g.dom.state == "shutdown"
    assert g["res_via"] == 0 and g.vcpu.upcall_vector == CALLBACK_VECTOR
    assert g["timer_seen"] == 1
    assert g.vcpu.lapic_isr == 0                           # every upcall ended with its EOI
    raised = [e for e in _interrupts(host, g) if "vLAPIC" in e.data["source"]]
    assert raised and all(e.data["vector"] == CALLBACK_VECTOR for e in raised)
    eois = [e for e in events(host, "msr", dom=g.dom.domid, dir="write") if e.data["msr"] == 0x80B]
    assert len(eois) == g["upcalls"] >= 1


def test_vlapic_holds_the_vector_in_service_until_eoi(tmp_path):
    from lab.xen import hvm
    host, xl = small_host()
    g = Guest(host, xl, tmp_path, "ev", flags=0)
    src = g.vcpu.cpu.irq_source
    assert hvm.set_upcall_vector(host, g.dom, 0, CALLBACK_VECTOR) == 0
    assert src.pending() == CALLBACK_VECTOR                # Xen raises one upcall straight away
    assert src.ack() == CALLBACK_VECTOR and src.name.startswith("evtchn upcall: per-vCPU vector 0xf3")
    hvm.assert_evtchn_irq(host, g.vcpu)                    # the next upcall: in IRR ...
    assert g.vcpu.lapic_irr == 1 << CALLBACK_VECTOR
    assert src.pending() is None                           # ... but the same vector is in service
    g.vcpu.lapic_isr = 0                                   # what the guest's EOI does
    assert src.pending() == CALLBACK_VECTOR


def test_upcall_vector_checks(tmp_path):
    host, xl = small_host()
    g = Guest(host, xl, tmp_path, "ev", flags=0)
    va = g.sym["param"]
    g.poke(va, struct.pack("<IB", 0, 0x0F))
    assert hypercall(host, g.vcpu, "hvm_op", HVMOP_set_evtchn_upcall_vector, va) == -EINVAL   # below 0x10
    g.poke(va, struct.pack("<IB", 5, 0xF3))
    assert hypercall(host, g.vcpu, "hvm_op", HVMOP_set_evtchn_upcall_vector, va) == -2        # ENOENT: no vCPU 5
    assert g.vcpu.upcall_vector == 0


# ---------------------------------------------------------------- PVH: no PIC, the vector only
@pytest.mark.parametrize("flags,via", [(F_STAY, VECTOR_VIA), (F_STAY | F_UPCALL_VECTOR, 0)])
def test_pvh_takes_its_timer_upcall_at_a_vector(tmp_path, flags, via):
    host, xl = small_host()
    g = Guest(host, xl, tmp_path, "pvh", flags=flags, via=via, type_="pvh")
    assert g.vcpu.cpu.irq_source is not None and "vpic" not in g.dom.devices
    host.run(max_insns=3_000_000)
    assert g.dom.alive and g["res_shinfo"] == 0 and g["res_via"] == 0
    assert g["timer_seen"] == 1 and g["pic_irqs"] == 0
    assert _interrupts(host, g)


def test_pvh_ignores_a_gsi_callback(tmp_path):
    from lab.xen import hvm
    host, xl = small_host()
    g = Guest(host, xl, tmp_path, "pvh", flags=0, type_="pvh")
    hvm.set_callback_via(host, g.dom, PLATFORM_IRQ)
    assert g.dom.callback_via_type == "none"
    hvm.set_callback_via(host, g.dom, VECTOR_VIA)
    assert g.dom.callback_via_type == "vector"


# ---------------------------------------------------------------- grant table frames
def test_grant_frame_written_by_the_guest_is_seen_and_mapped_by_dom0(tmp_path):
    host, _, g = _run(F_GRANT | F_STAY, tmp_path, via=VECTOR_VIA)
    assert g.dom.alive and g["timer_seen"] == 1
    assert g["res_grant"] == 0
    gt = host.grant_tables
    frame0 = gt.frames[g.dom.domid][0]
    assert g.dom.gfn_to_mfn(g.gnt_gpfn) == frame0          # beyond RAM: a new p2m entry
    assert g.gnt_gpfn >= len(g.dom.p2m)
    gfn = g.sym["granted_page"] >> 12
    assert gt.read_entry(g.dom.domid, 8) == (GTF_permit_access, 0, gfn)
    dom0_vcpu = host.domains[0].vcpus[0]
    status, handle, addr = gt.map_for_service(dom0_vcpu, g.dom.domid, 8, readonly=False)
    assert status == 0
    assert addr == g.dom.p2m[gfn] << 12
    assert host.mem.read_u64(addr) == 0x1122334455667788
    flags = gt.read_entry(g.dom.domid, 8)[0]
    assert flags & GTF_reading and flags & GTF_writing
    # setup_table tells an HVM guest the gfn, never the mfn
    va = g.sym["req"]
    out = g.sym["sshot"]
    g.poke(va, struct.pack("<HxxIh6xQ", DOMID_SELF, 2, 0x5a, out))   # {dom, nr_frames, status, frame_list}
    assert hypercall(host, g.vcpu, "grant_table_op", 2, va, 1) == 0
    got = struct.unpack("<QQ", g.peek(out, 16))
    assert got == (g.gnt_gpfn, 0xFFFF_FFFF_FFFF_FFFF)      # frame 1 is in no physmap yet
    assert struct.unpack("<h", g.peek(va + 8, 2))[0] == 0   # GNTST_okay


# ---------------------------------------------------------------- refusals
def test_add_to_physmap_refusals(tmp_path):
    host, xl = small_host()
    g = Guest(host, xl, tmp_path, "a", flags=0)
    other = Guest(host, xl, tmp_path, "b", flags=0)
    va = g.sym["req"]
    before = list(other.dom.p2m)

    def call(domid, space, idx, gpfn):
        g.poke(va, struct.pack("<HHIQQ", domid, 0, space, idx, gpfn))
        return hypercall(host, g.vcpu, "memory_op", XENMEM_add_to_physmap, va)

    assert call(other.dom.domid, XENMAPSPACE_shared_info, 0, 0x100) == -EPERM     # another domain's physmap
    assert call(other.dom.domid, XENMAPSPACE_grant_table, 0, 0x100) == -EPERM
    assert call(0, XENMAPSPACE_shared_info, 0, 0x100) == -EACCES                  # dom0 is PV: not translated
    assert call(DOMID_SELF, XENMAPSPACE_gmfn_foreign, 0, 0x100) == -ENOSYS        # only through the batch
    assert call(0x7FF4, XENMAPSPACE_shared_info, 0, 0x100) == -ESRCH
    assert call(DOMID_SELF, XENMAPSPACE_shared_info, 1, 0x100) == -EINVAL         # shared_info has one frame
    assert call(DOMID_SELF, XENMAPSPACE_grant_table, 64, 0x100) == -EINVAL        # beyond gnttab_max_frames
    assert other.dom.p2m == before and other.dom.physmap_extra == {}
    assert g.dom.gfn_to_mfn(0x100) not in (g.dom.shared_info_mfn, other.dom.shared_info_mfn)
    ev = events(host, "hypercall", dom=g.dom.domid, name="memory_op")
    assert [e.data["errno"] for e in ev] == ["EPERM", "EPERM", "EACCES", "ENOSYS", "ESRCH", "EINVAL", "EINVAL"]
    assert host.mm.pv.check_invariants() == []


def test_destroy_after_add_to_physmap_frees_everything_once(tmp_path):
    host, xl, g = _run(F_GRANT, tmp_path, via=VECTOR_VIA)
    free_before = host.free_pages
    owned = len(host.mm.frames_of(g.dom.domid))
    pool = len(g.dom.extra["paging_pool"].frames)                        # its EPT tables (paging_teardown)
    host.destroy(g.dom)
    assert len(set(host.free_frames)) == len(host.free_frames)          # no frame freed twice
    assert host.free_pages == free_before + owned + pool
    assert host.mm.frames_of(g.dom.domid) == []


# ---------------------------------------------------------------- shadow paging
def test_shared_info_under_shadow_paging(tmp_path):
    host, _, g = _run(0, tmp_path, via=VECTOR_VIA, ept=False)
    assert g.dom.extra.get("shadow") is not None
    assert g["res_shinfo"] == 0 and g["timer_seen"] == 1
    assert g.dom.p2m[g.shinfo_gpfn] == g.dom.shared_info_mfn
    shadow = g.dom.extra["shadow"]
    assert shadow.gfn_of.get(g.dom.shared_info_mfn) == g.shinfo_gpfn and g.ram_frame not in shadow.gfn_of
    # no shadow entry still maps the freed frame
    assert all(m != g.ram_frame for _s, _i, m in shadow.leaves())


def test_frames_beyond_ram_under_shadow_paging(tmp_path):
    host, _, g = _run(F_GRANT | F_STAY, tmp_path, via=VECTOR_VIA, ept=False, shinfo_in_ram=False)
    assert g["res_shinfo"] == 0 and g["res_grant"] == 0 and g["timer_seen"] == 1
    assert g.shinfo_gpfn >= len(g.dom.p2m)
    assert g.dom.physmap_extra == {g.shinfo_gpfn: g.dom.shared_info_mfn,
                                   g.gnt_gpfn: host.grant_tables.frames[g.dom.domid][0]}
    assert g.dom.mem_pages == g.dom.max_pages               # nothing of RAM was given up
    # the guest's grant entry went through the shadow's 1:1 map to the grant frame
    gfn = g.sym["granted_page"] >> 12
    assert host.grant_tables.read_entry(g.dom.domid, 8) == (GTF_permit_access, 0, gfn)
