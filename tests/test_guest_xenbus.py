"""The guest kernel's Xen drivers: its xenstore client, grant table, event channels and blkfront.

The xenstore and grant tests run the stock PV and PVH kernels with a probe in
place of their block driver (OP_BLK_INIT): it calls the kernel's own xs_*,
gnttab_* and virt_to_gfn routines and prints what they return. The block
tests run the stock kernels and the workload against a disk image.
"""

from __future__ import annotations

import struct

import pytest

from lab.dom0.xsclient import device_paths
from lab.paths import KERNELS
from test_machine import expected_checksum, workload_sector
from xen_helpers import create, events, peek, private_image_bytes, small_host

pytestmark = pytest.mark.machine       # every test here boots a whole machine

DIRECT_MAP = 0xFFFF888000000000
GTF_permit_access, GTF_readonly, GTF_reading = 1, 4, 8
XVDA = 202 << 8                        # xen-vbd-interface: xvda
MARK = 0x1122334455667788

# The probe: OP_BLK_INIT of a test kernel. Prints one line of xenstore
# results, grants a page (read-only) to dom0, waits until dom0 maps it, then
# ends the grant, yielding while gnttab_end says -EBUSY.
PROBE = r"""
.text
xs_probe:
    push rbx
    push r12
    push r13
    call xs_init
    mov rdi, rax
    call put_signed
    lea rdi, [rip + p_name]
    call puts
    lea rdi, [rip + p_key_name]
    lea rsi, [rip + p_buf]
    mov rdx, 64
    call xs_read
    push rax
    lea rdi, [rip + p_buf]
    call puts
    lea rdi, [rip + p_len]
    call puts
    pop rdi
    call put_signed
    lea rdi, [rip + p_domid]
    call puts
    lea rdi, [rip + p_key_domid]
    call xs_read_u64
    mov rdi, rax
    call put_signed
    lea rdi, [rip + p_missing]
    call puts
    lea rdi, [rip + p_key_missing]
    call xs_read_u64
    mov rdi, rax
    call put_signed
    lea rdi, [rip + p_write]
    call puts
    lea rdi, [rip + p_key_greeting]
    lea rsi, [rip + p_hello]
    call xs_write
    mov rdi, rax
    call put_signed
    lea rdi, [rip + p_space]
    call puts
    lea rdi, [rip + p_key_answer]
    mov rsi, 42
    call xs_write_u64
    mov rdi, rax
    call put_signed
    lea rdi, [rip + p_answer]
    call puts
    lea rdi, [rip + p_key_answer]
    call xs_read_u64
    mov rdi, rax
    call put_signed
    lea rdi, [rip + p_denied]
    call puts
    lea rdi, [rip + p_key_denied]
    lea rsi, [rip + p_hello]
    call xs_write
    mov rdi, rax
    call put_signed
    lea rdi, [rip + p_nl]
    call puts
    ; a page with a mark in it, granted read-only to dom0
    call gnttab_init
    call alloc_frame
    mov rcx, DIRECT_MAP
    add rax, rcx
    mov r12, rax
    mov rax, 0x1122334455667788
    mov [r12], rax
    mov rdi, r12
    call virt_to_gfn
    mov r13, rax
    xor edi, edi
    mov rsi, r13
    mov rdx, 1
    call gnttab_grant
    mov rbx, rax
    lea rdi, [rip + p_gnt]
    call puts
    mov rdi, rbx
    call put_signed
    lea rdi, [rip + p_frame]
    call puts
    mov rdi, r13
    call put_dec
    lea rdi, [rip + p_nl]
    call puts
.wait_map:                           ; until dom0 maps it: Xen sets GTF_reading
    mov rax, [rip + gnttab_va]
    test word [rax + rbx*8], 8
    jnz .end
    xor edi, edi                     ; SCHEDOP_yield
    xor esi, esi
    call HC_sched_op
    jmp .wait_map
.end:
    mov rdi, rbx
    call gnttab_end
    test rax, rax
    jz .ended
    cmp qword [rip + p_said_busy], 0
    jne .yield
    mov [rip + p_said_busy], rax
    lea rdi, [rip + p_busy]
    call puts
    mov rdi, [rip + p_said_busy]
    call put_signed
    lea rdi, [rip + p_nl]
    call puts
.yield:
    xor edi, edi                     ; SCHEDOP_yield
    xor esi, esi
    call HC_sched_op
    jmp .end
.ended:
    lea rdi, [rip + p_ended]
    call puts
    mov rax, -ENODEV
    pop r13
    pop r12
    pop rbx
    ret

; put_signed(rdi): a decimal with its sign
put_signed:
    test rdi, rdi
    jns .pos
    push rdi
    lea rdi, [rip + p_minus]
    call puts
    pop rdi
    neg rdi
.pos:
    jmp put_dec

.data
p_said_busy:    .quad 0
p_name:         .asciz " name="
p_len:          .asciz " len="
p_domid:        .asciz " domid="
p_missing:      .asciz " missing="
p_write:        .asciz " write="
p_answer:       .asciz " answer="
p_denied:       .asciz " denied="
p_space:        .asciz " "
p_minus:        .asciz "-"
p_nl:           .asciz "\n"
p_gnt:          .asciz "gnt: ref="
p_frame:        .asciz " frame="
p_busy:         .asciz "gnt: end="
p_ended:        .asciz "gnt: ended\n"
p_key_name:     .asciz "name"
p_key_domid:    .asciz "domid"
p_key_missing:  .asciz "data/nosuch"
p_key_greeting: .asciz "data/greeting"
p_key_answer:   .asciz "data/answer"
p_key_denied:   .asciz "memory/target"
p_hello:        .asciz "hello"
p_buf:          .zero 64
"""


def probe_kernel(tmp_path, flavour: str):
    """The stock kernel of ``flavour`` with the probe as its OP_BLK_INIT."""
    src = (KERNELS / f"{flavour}.s").read_text()
    assert ".equ BLK_INIT_OP, blkfront_init" in src
    src = src.replace(".equ BLK_INIT_OP, blkfront_init", ".equ BLK_INIT_OP, xs_probe")
    head, tail = src.rsplit('.include "common/kernel.s"', 1)
    path = tmp_path / f"{flavour}_probe.s"
    path.write_text(head + PROBE + '\n.include "common/kernel.s"' + tail)
    return path


def run_until(host, dom, text: str, limit: int = 60, step: int = 200_000) -> None:
    for _ in range(limit):
        if text in dom.console_output or not dom.alive:
            break
        host.run(step)
    assert text in dom.console_output, dom.console_output


def guest_type(flavour: str) -> tuple[str, dict]:
    return {"pv": ("pv", {}), "pv32": ("pv", {"lab_pv32": 1}), "pvh": ("pvh", {"hap": 1})}[flavour]


@pytest.mark.parametrize("flavour", ["pv", "pvh"])
def test_the_guest_reads_and_writes_its_home_through_its_ring(tmp_path, flavour):
    host, xl = small_host()
    type_, keys = guest_type(flavour)
    dom = create(xl, tmp_path, f"probe-{flavour}", type_, kernel=probe_kernel(tmp_path, flavour), **keys)
    run_until(host, dom, "gnt: ref=", limit=600, step=20_000)
    d = dom.domid
    name = f"probe-{flavour}"
    # ENOENT for a node that is not there, EACCES for one dom0 owns (memory/target is n0 r<D>)
    assert (f"0 name={name} len={len(name)} domid={d} missing=-2 write=0 0 answer=42 denied=-13"
            in dom.console_output)
    store = host.services.xenstored.store
    assert store.read(0, f"/local/domain/{d}/data/greeting") == "hello"
    assert store.read(0, f"/local/domain/{d}/data/answer") == "42"
    # every request went through the ring: xenstored traced each as the guest's
    reads = events(host, "xenstore", dom=d, op="XS_READ", path="name")
    assert reads and reads[-1].data["value"] == name and reads[-1].data["result"] == "OK"
    assert events(host, "xenstore", dom=d, op="XS_WRITE", path="data/greeting")


@pytest.mark.parametrize("flavour", ["pv", "pvh"])
def test_a_grant_is_what_dom0_sees_and_ends_only_once_unmapped(tmp_path, flavour):
    host, xl = small_host()
    type_, keys = guest_type(flavour)
    dom = create(xl, tmp_path, f"gnt-{flavour}", type_, kernel=probe_kernel(tmp_path, flavour), **keys)
    run_until(host, dom, "gnt: ref=", limit=600, step=20_000)
    line = dom.console_output.split("gnt: ref=")[1].splitlines()[0]
    ref, frame = int(line.split()[0]), int(line.split("frame=")[1])
    assert ref == 8, "the first ref after the 8 reserved ones"
    gt = host.grant_tables
    flags, domid, entry_frame = gt.read_entry(dom.domid, ref)
    assert (flags, domid, entry_frame) == (GTF_permit_access | GTF_readonly, 0, frame)
    # PV grants machine frames, PVH guest frames
    mfn = frame if flavour == "pv" else dom.gfn_to_mfn(frame)
    if flavour == "pv":
        assert host.mm.pv.pages[frame].owner == dom.domid
    assert host.mem.read_u64(mfn << 12) == MARK
    v0 = host.domains[0].vcpus[0]
    status, _handle, _bus = gt.map_for_service(v0, dom.domid, ref, readonly=False)
    assert status != 0, "a read-only grant does not map writable"
    status, handle, bus = gt.map_for_service(v0, dom.domid, ref, readonly=True)
    assert status == 0 and host.mem.read_u64(bus) == MARK
    assert gt.read_entry(dom.domid, ref)[0] & GTF_reading
    run_until(host, dom, "gnt: end=", limit=50, step=20_000)
    host.run(20_000)
    assert "gnt: end=-16" in dom.console_output, "gnttab_end says EBUSY while dom0 maps the page"
    assert "gnt: ended" not in dom.console_output
    assert gt.unmap(v0, 0, handle) == 0
    run_until(host, dom, "gnt: ended", limit=50, step=20_000)
    assert gt.read_entry(dom.domid, ref)[0] == 0


def disk_guest(tmp_path, flavour: str, name: str | None = None):
    host, xl = small_host()
    type_, keys = guest_type(flavour)
    img = tmp_path / f"{flavour}.img"
    dom = create(xl, tmp_path, name or f"disk-{flavour}", type_,
                 disk=[f"format=raw, vdev=xvda, access=rw, target={img}"], **keys)
    return host, xl, dom, img


@pytest.mark.parametrize("flavour", ["pv", "pv32", "pvh"])
def test_blkfront_connects_and_the_workload_uses_the_disk(tmp_path, flavour):
    host, xl, dom, img = disk_guest(tmp_path, flavour)
    host.run(60_000_000)
    out = dom.console_output
    assert dom.state == "shutdown", out
    assert "blk: xen-blkfront 16384 sectors" in out
    assert "workload: disk ok" in out
    assert f"workload: checksum {expected_checksum():#018x}" in out
    # what the workload wrote is in the disk's private image, in sector 0; the file itself is never made
    assert struct.unpack("<64Q", private_image_bytes(host, img)[:512]) == tuple(workload_sector())
    assert not img.exists()
    # the handshake as blkif.h draws it, seen in the store
    d = dom.domid
    fe, be = device_paths("vbd", d, XVDA)
    store = host.services.xenstored.store
    assert store.read(0, f"{fe}/state") == "4" and store.read(0, f"{be}/state") == "4"
    assert store.read(0, f"{fe}/protocol") == "x86_64-abi"
    ring_ref = int(store.read(0, f"{fe}/ring-ref"))
    port = int(store.read(0, f"{fe}/event-channel"))
    assert ring_ref >= 8
    p = host.evtchn.ports[d][port]
    assert p.state == "interdomain" and p.remote_dom == 0
    # ring-ref, event-channel, protocol and state 3 went in one transaction
    relative = fe[len(f"/local/domain/{d}/"):]          # the guest writes relative paths
    writes = [e.data["path"] for e in events(host, "xenstore", dom=d, op="XS_WRITE", result=None)]
    assert {f"{relative}/{k}" for k in ("ring-ref", "event-channel", "protocol", "state")} <= set(writes)
    starts = events(host, "xenstore", dom=d, op="XS_TRANSACTION_START")
    ends = events(host, "xenstore", dom=d, op="XS_TRANSACTION_END")
    assert starts and ends and ends[-1].data["result"] == "OK"
    # the data moved through grants the backend mapped (the ring, then one page per request)
    maps = events(host, "grant", op="map_grant_ref", granter=d, status="GNTST_okay")
    assert ring_ref in {e.data["ref"] for e in maps}
    assert len(maps) >= 3, "the ring, the sector written, the sector read"


def test_without_a_disk_the_workload_says_so_and_sums_the_same(tmp_path):
    host, xl = small_host()
    dom = create(xl, tmp_path, "nodisk", "pv")
    host.run(40_000_000)
    out = dom.console_output
    assert "blk: no disk\n" in out and "workload: no disk" in out
    assert f"workload: checksum {expected_checksum():#018x}" in out
    reads = events(host, "xenstore", dom=dom.domid, op="XS_DIRECTORY", path="device/vbd")
    assert reads and reads[-1].data["result"] == "ENOENT"


# A user program that drives pread64/pwrite64 on fd 3 and prints each result.
DISK_PROBE = r"""
.equ SYS_write, 1
.equ SYS_exit, 60
.equ SYS_pread64, 17
.equ SYS_pwrite64, 18
.text
.org 0x400000
_start:
    lea rdi, [rip + out]
    mov rcx, 512
    mov rax, 0x0123456789abcdef
    mov rdx, 0x9e3779b97f4a7c15
.fill:
    mov [rdi], rax
    add rax, rdx
    add rdi, 8
    dec rcx
    jnz .fill
    mov eax, SYS_pwrite64
    mov edi, 3
    lea rsi, [rip + out]
    mov edx, 4096
    mov r10d, 512
    call sys
    mov eax, SYS_pread64
    mov edi, 3
    lea rsi, [rip + in]
    mov edx, 4096
    mov r10d, 512
    call sys
    ; compare: 1 if the page came back as written
    lea rsi, [rip + out]
    lea rdi, [rip + in]
    mov rcx, 512
    mov eax, 1
.cmp:
    mov rdx, [rsi]
    cmp rdx, [rdi]
    je .same
    xor eax, eax
.same:
    add rsi, 8
    add rdi, 8
    dec rcx
    jnz .cmp
    mov rdi, rax
    call show
    mov eax, SYS_pread64               ; not the disk
    mov edi, 4
    lea rsi, [rip + in]
    mov edx, 512
    xor r10d, r10d
    call sys
    mov eax, SYS_pread64               ; not whole sectors
    mov edi, 3
    lea rsi, [rip + in]
    mov edx, 100
    xor r10d, r10d
    call sys
    mov eax, SYS_pread64               ; an offset inside a sector
    mov edi, 3
    lea rsi, [rip + in]
    mov edx, 512
    mov r10d, 100
    call sys
    mov eax, SYS_pread64               ; more than a page
    mov edi, 3
    lea rsi, [rip + in]
    mov edx, 8192
    xor r10d, r10d
    call sys
    mov eax, SYS_pread64               ; into the kernel's half
    mov edi, 3
    mov rsi, 0xffff888000000000
    mov edx, 512
    xor r10d, r10d
    call sys
    mov eax, SYS_pread64               ; at the end of the disk: nothing to read
    mov edi, 3
    lea rsi, [rip + in]
    mov edx, 512
    mov r10, 16384 * 512
    call sys
    mov eax, SYS_pwrite64              ; at the end of the disk: no room
    mov edi, 3
    lea rsi, [rip + out]
    mov edx, 512
    mov r10, 16384 * 512
    call sys
    mov eax, SYS_exit
    xor edi, edi
    syscall
.hang:
    jmp .hang

sys:
    syscall
    mov rdi, rax
; show(rdi): "r=<hex>\n"
show:
    lea rsi, [rip + hexbuf + 18]
    mov rcx, 16
.nib:
    dec rsi
    mov rax, rdi
    and rax, 15
    lea rdx, [rip + digits]
    movzx eax, byte [rdx + rax]
    mov [rsi], al
    shr rdi, 4
    dec rcx
    jnz .nib
    mov eax, SYS_write
    mov edi, 1
    lea rsi, [rip + line]
    mov edx, 21
    syscall
    ret

.data
digits:  .ascii "0123456789abcdef"
line:    .ascii "r="
hexbuf:  .ascii "0x0000000000000000\n"
.align 8
out:     .zero 4096
in:      .zero 4096
"""


def _results(out: str) -> list[int]:
    vals = [int(ln[2:], 16) for ln in out.splitlines() if ln.startswith("r=0x")]
    return [v - (1 << 64) if v >> 63 else v for v in vals]


@pytest.mark.parametrize("flavour", ["pv", "pvh"])
def test_pread_and_pwrite_on_the_disk_and_their_errors(tmp_path, flavour):
    prog = tmp_path / "disk_probe.s"
    prog.write_text(DISK_PROBE)
    host, xl = small_host()
    type_, keys = guest_type(flavour)
    img = tmp_path / "probe.img"
    dom = create(xl, tmp_path, "probe", type_, disk=[f"format=raw, vdev=xvda, access=rw, target={img}"],
                 lab_program=str(prog), **keys)
    host.run(60_000_000)
    assert dom.state == "shutdown", dom.console_output
    # 8 sectors written and read back at 512; EBADF, EINVAL x3, EFAULT; 0 and ENOSPC at the end
    assert _results(dom.console_output) == [4096, 4096, 1, -9, -22, -22, -22, -14, 0, -28]
    data = private_image_bytes(host, img)
    assert data[:512] == bytes(512) and data[512:4608] != bytes(4096)


def test_pread_without_a_disk_is_enodev(tmp_path):
    prog = tmp_path / "disk_probe.s"
    prog.write_text(DISK_PROBE)
    host, xl = small_host()
    dom = create(xl, tmp_path, "probe", "pv", lab_program=str(prog))
    host.run(40_000_000)
    assert _results(dom.console_output)[:2] == [-19, -19]


@pytest.mark.parametrize("flavour", ["pv", "pvh"])
def test_an_event_in_user_mode_reaches_the_ports_handler(tmp_path, flavour):
    """dom0 notifies blkfront's port while the workload computes: the upcall (a PV
    bounce, the PVH callback vector) runs evtchn_do_upcall, which calls the handler."""
    host, xl, dom, img = disk_guest(tmp_path, flavour)
    run_until(host, dom, "workload: system calls")
    d = dom.domid
    fe, _be = device_paths("vbd", d, XVDA)
    port = int(host.services.xenstored.store.read(0, f"{fe}/event-channel"))
    far = host.evtchn.ports[d][port].remote_port
    counter = dom.images["kernel"].symbols["blk_events"]
    before = int.from_bytes(peek(host, dom, counter, 8), "little")
    assert host.evtchn.send(0, far) == 0
    host.run(50_000)
    assert int.from_bytes(peek(host, dom, counter, 8), "little") == before + 1
    # delivered as the flavour delivers events, and the pending bit consumed
    if flavour == "pv":
        assert events(host, "trap", dom=d, mnemonic="event upcall")
    base = dom.shared_info_mfn << 12
    assert not host.mem.read_u64(base + 2048) >> port & 1
    host.run(60_000_000)
    assert f"workload: checksum {expected_checksum():#018x}" in dom.console_output
