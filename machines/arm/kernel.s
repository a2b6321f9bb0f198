.arch arm64
// The lab's Arm guest kernel: one kernel for every Arm guest, since Xen on Arm
// has one guest type. It runs at EL1 behind Xen's stage 2 and does what Linux's
// xen_guest_init() and its drivers do:
//
//   1. asks Xen its version (hvc #0xEA1, x16 = __HYPERVISOR_xen_version)
//   2. finds Xen in the device tree Xen's toolstack built (x0 at entry): the
//      /hypervisor node's compatible, reg (where to map the grant table) and
//      interrupts (the event-channel PPI)
//   3. maps shared_info over one of its own pages and grant-table frame 0 at
//      the reg address, with XENMEM_add_to_physmap
//   4. reads where its console and xenstore rings are (HVMOP_get_param)
//   5. opens the GIC's virtual CPU interface and arms the virtual timer (PPI 27)
//   6. reads its name from xenstore over the ring, waiting in wfi for the
//      event channel's PPI, then finds its disk and NIC there and connects
//      blkfront and netfront to dom0's backends with the xenbus handshake,
//      over grants and event channels (drivers/: the x86 kernels' drivers)
//   7. starts its second vCPU, if it has one, with PSCI CPU_ON (hvc #0, as the
//      device tree's /psci node says); that vCPU notes its MPIDR and turns
//      itself off again with CPU_OFF
//   8. runs the user program at EL0 (its entry in x1, the rounds in x2) and
//      serves its system calls (Linux arm64 numbers, svc #0): pread64 and
//      pwrite64 of fd 3 go to the disk, the lab's ping to the NIC. With
//      "shell" on its command line (bit 63 of x2) it runs a shell on its
//      console instead (shell.s), reading what xenconsoled puts in in[]
//
// First it turns its stage 1 on: an identity map in 2 MiB blocks (the kernel's
// own block for EL1 only, the rest of RAM for the program), so every access
// goes VA -> IPA through its tables and IPA -> PA through Xen's: the 2-D walk.
// The program's heap (brk, HEAP_BASE up to HEAP_LIMIT) is the exception: its
// 4 KiB pages are mapped on demand, as the x86 kernels do. Its level-3 tables
// start empty; the program's first touch of a page inside brk is a stage-1
// translation fault at EL0 (a data abort, DFSC level 3), and the kernel maps
// the page, zeroes it and returns to the instruction, which runs again.
//
// Output goes to the PV console ring. Registers: x0-x17 scratch (x16 is the
// hypercall number), x19-x28 kept by every routine.

.equ XEN_HYPERCALL_TAG,          0xea1
.equ __HYPERVISOR_memory_op,     12
.equ __HYPERVISOR_xen_version,   17
.equ __HYPERVISOR_sched_op,      29
.equ __HYPERVISOR_event_channel_op, 32
.equ __HYPERVISOR_hvm_op,        34
.equ XENVER_version,             0
.equ XENMEM_add_to_physmap,      7
.equ XENMAPSPACE_shared_info,    0
.equ XENMAPSPACE_grant_table,    1
.equ EVTCHNOP_send,              4
.equ SCHEDOP_yield,              0
.equ SCHEDOP_shutdown,           2
.equ SHUTDOWN_poweroff,          0
.equ SHUTDOWN_crash,             3
.equ HVMOP_get_param,            1
.equ HVM_PARAM_STORE_PFN,        1
.equ HVM_PARAM_STORE_EVTCHN,     2
.equ HVM_PARAM_CONSOLE_PFN,      17
.equ HVM_PARAM_CONSOLE_EVTCHN,   18
.equ DOMID_SELF,                 0x7ff0
.equ PPI_VTIMER,                 27
.equ PSCI_SUCCESS,               0
.equ PSCI_0_2_AFFINITY_LEVEL_OFF, 1
.equ TIMER_TICKS,                6250      // 100 us at the generic timer's 62.5 MHz
// struct xencons_interface and struct xenstore_domain_interface offsets
.equ CONS_OUT, 1024
.equ CONS_OUT_CONS, 3080
.equ CONS_OUT_PROD, 3084
// Linux arm64 system call numbers
.equ SYS_pread64, 67
.equ SYS_pwrite64, 68
.equ SYS_write, 64
.equ SYS_exit, 93
.equ SYS_getpid, 172
.equ SYS_brk, 214
.equ SYS_lab_ping, 512
.equ ENOSYS, 38
.equ ENODEV, 19
.equ EBADF, 9
.equ EINVAL, 22
.equ DISK_FD, 3
.equ SECTOR_SIZE, 512
.equ HEAP_BASE, 0x40800000
.equ HEAP_LIMIT, 0x40c00000
.equ USER_STACK, 0x40700000
// Stage-1 block descriptors (bits 1:0 = 01): AF, inner shareable, AttrIndx 0, and
// EL1_CODE: EL1 read/write/execute, EL0 nothing (UXN)
// EL1_DATA: EL1 read/write, never executed (PXN, UXN): the grant table and magic pages
// USER: EL0 and EL1 read/write, EL0 may execute, EL1 may not (PXN)
.equ BLOCK_ATTRS, 0x701
.equ TCR_T0SZ39_EPD1, 0x800019         // T0SZ 25: a 39-bit VA from level 1; no TTBR1 walks

.org 0x40080000
_start:
    mov x19, x0                        // the device tree
    mov x27, x1                        // the program's entry
    mov x28, x2                        // its rounds
    adr x9, kstack_top
    mov sp, x9
    adr x9, vectors
    msr vbar_el1, x9
    bl stage1_on

    // 1. which Xen?
    mov x16, #__HYPERVISOR_xen_version
    mov x0, #XENVER_version
    mov x1, #0
    hvc #XEN_HYPERCALL_TAG
    adr x1, xen_version
    str x0, [x1]

    // 2. the /hypervisor node
    mov x0, x19
    bl fdt_hypervisor
    adr x9, hyp_compat
    ldr x9, [x9]
    cbz x9, not_on_xen

    // 3. shared_info over our own page, grant frame 0 where the tree says
    mov x0, #XENMAPSPACE_shared_info
    adr x1, shared_info_page
    lsr x1, x1, #12
    bl add_to_physmap
    cbnz x0, setup_failed
    mov x0, #XENMAPSPACE_grant_table
    adr x1, gnttab_base
    ldr x1, [x1]
    lsr x1, x1, #12
    bl add_to_physmap
    cbnz x0, setup_failed

    // 4. the rings
    mov x0, #HVM_PARAM_CONSOLE_PFN
    bl get_param
    lsl x0, x0, #12
    adr x1, console_ring
    str x0, [x1]
    mov x0, #HVM_PARAM_CONSOLE_EVTCHN
    bl get_param
    adr x1, console_port
    str x0, [x1]
    mov x0, #HVM_PARAM_STORE_PFN
    bl get_param
    lsl x0, x0, #12
    adr x1, store_ring
    str x0, [x1]
    mov x0, #HVM_PARAM_STORE_EVTCHN
    bl get_param
    adr x1, store_port
    str x0, [x1]

    // 5. interrupts: the GIC's (virtual) CPU interface, then the virtual timer
    mov x0, #0xff
    msr icc_pmr_el1, x0
    mov x0, #1
    msr icc_igrpen1_el1, x0
    mov x0, #TIMER_TICKS
    msr cntv_tval_el0, x0
    mov x0, #1
    msr cntv_ctl_el0, x0
    msr daifclr, #2

    adr x0, msg_banner
    bl puts
    adr x0, xen_version
    ldr x0, [x0]
    lsr x0, x0, #16
    bl put_dec
    adr x0, msg_dot
    bl puts
    adr x0, xen_version
    ldr x0, [x0]
    and x0, x0, #0xffff
    bl put_dec
    adr x0, msg_banner_end
    bl puts
    adr x0, msg_found
    bl puts
    adr x0, hyp_compat
    ldr x0, [x0]
    bl puts
    adr x0, msg_gnttab
    bl puts
    adr x0, gnttab_base
    ldr x0, [x0]
    bl put_hex
    adr x0, msg_ppi
    bl puts
    adr x0, evtchn_ppi
    ldr x0, [x0]
    bl put_dec
    adr x0, msg_nl
    bl puts
    adr x0, msg_shinfo
    bl puts
    adr x0, shared_info_page
    bl put_hex
    adr x0, msg_nl
    bl puts

    // 6. xenstore: our name, then our devices
    adr x0, msg_xs
    bl puts
    adr x0, str_name
    bl xs_read
    adr x0, xs_buf
    bl puts
    adr x0, msg_nl
    bl puts
    bl blkfront_init
    mov x20, x0
    adr x0, msg_blk
    bl puts
    mov x0, x20
    cmp x0, #0
    b.le 1f
    bl put_dec
    adr x0, msg_blk_ok
    bl puts
    b 2f
1:  adr x0, msg_dev_none
    bl puts
2:  bl netfront_init
    mov x20, x0
    adr x0, msg_net
    bl puts
    cbnz x20, 1f
    adr x0, msg_net_ok
    bl puts
    b 2f
1:  adr x0, msg_dev_none
    bl puts
2:

    // 7. the second vCPU: PSCI CPU_ON (the 64-bit function ID 0xc4000003: MPIDR, entry,
    // context id), then wait for it to say it ran and for AFFINITY_INFO to say it is off
    movz x0, #0xc400, lsl #16
    movk x0, #3
    mov x1, #1                         // MPIDR Aff0 1: vCPU 1
    adr x2, secondary_start
    mov x3, #0x5ec                     // its context id, in its x0
    hvc #0
    cmp x0, #PSCI_SUCCESS
    b.ne 4f                            // one vCPU only: INVALID_PARAMETERS
2:  adr x9, secondary_mpidr
    ldr x0, [x9]
    cbnz x0, 3f
    mov x16, #__HYPERVISOR_sched_op     // let it run on the pCPU
    mov x0, #SCHEDOP_yield
    mov x1, #0
    hvc #XEN_HYPERCALL_TAG
    b 2b
3:  movz x0, #0x8400, lsl #16
    movk x0, #4                        // AFFINITY_INFO (MPIDR 1, level 0)
    mov x1, #1
    mov x2, #0
    hvc #0
    cmp x0, #PSCI_0_2_AFFINITY_LEVEL_OFF
    b.eq 5f
    mov x16, #__HYPERVISOR_sched_op
    mov x0, #SCHEDOP_yield
    mov x1, #0
    hvc #XEN_HYPERCALL_TAG
    b 3b
5:  adr x0, msg_psci
    bl puts
    adr x0, secondary_mpidr
    ldr x0, [x0]
    bl put_hex
    adr x0, msg_psci_ctx
    bl puts
    adr x0, secondary_ctx
    ldr x0, [x0]
    bl put_hex
    adr x0, msg_psci_off
    bl puts
4:
    // 8. the shell, when the command line asked for it (the toolstack's flag in x2)...
    lsr x9, x28, #63
    cbnz x9, shell_main
    // ... else the program, at EL0 with interrupts on
start_program:
    adr x0, msg_exec
    bl puts
    msr daifset, #2                    // an interrupt now would overwrite ELR_EL1 and SPSR_EL1
    msr elr_el1, x27
    msr spsr_el1, xzr                  // EL0t, D A I F clear
    mov x9, #USER_STACK
    msr sp_el0, x9
    and x0, x28, #0x7fffffffffffffff   // its rounds, without the shell flag
    eret

not_on_xen:
    // No /hypervisor node: there is no Xen to print through. Stop here.
1:  wfi
    b 1b
setup_failed:
    mov x0, #SHUTDOWN_crash
    b shutdown

// stage1_on: the identity map in 2 MiB blocks, then SCTLR_EL1.M
stage1_on:
    adr x9, l1_table
    adr x10, l2_low
    orr x11, x10, #3
    str x11, [x9]                      // L1[0]: 0-1 GiB through l2_low
    adr x10, l2_ram
    orr x11, x10, #3
    str x11, [x9, #8]                  // L1[1]: 1-2 GiB (guest RAM) through l2_ram
    movz x12, #0x0060, lsl #48         // EL1_DATA: PXN and UXN
    movk x12, #BLOCK_ATTRS
    adr x10, l2_low
    movz x11, #0x3800, lsl #16         // the grant-table region
    orr x13, x11, x12
    str x13, [x10, #(0x38000000 >> 21) * 8]
    movz x11, #0x3900, lsl #16         // the magic pages: console and xenstore rings
    orr x13, x11, x12
    str x13, [x10, #(0x39000000 >> 21) * 8]
    adr x10, l2_ram
    movz x12, #0x0020, lsl #48         // USER: EL0 read/write/execute, PXN
    movk x12, #BLOCK_ATTRS | 0x40
    movz x11, #0x4000, lsl #16
    mov x14, #0x200000
    mov x15, #512
1:  orr x13, x11, x12
    str x13, [x10], #8
    add x11, x11, x14
    subs x15, x15, #1
    b.ne 1b
    adr x10, l2_ram                    // block 0, the kernel's: EL1 only (UXN)
    movz x12, #0x0040, lsl #48
    movk x12, #BLOCK_ATTRS
    movz x11, #0x4000, lsl #16
    orr x13, x11, x12
    str x13, [x10]
    adr x10, l2_ram                    // the heap's two blocks: level-3 tables, empty
    adr x11, l3_heap
    orr x11, x11, #3
    str x11, [x10, #((HEAP_BASE - 0x40000000) >> 21) * 8]
    adr x11, l3_heap + 4096
    orr x11, x11, #3
    str x11, [x10, #((HEAP_BASE - 0x40000000) >> 21) * 8 + 8]
    mov x9, #0xff
    msr mair_el1, x9                   // attribute 0: normal write-back memory
    movz x9, #TCR_T0SZ39_EPD1 >> 16, lsl #16
    movk x9, #TCR_T0SZ39_EPD1 & 0xffff
    msr tcr_el1, x9
    adr x9, l1_table
    msr ttbr0_el1, x9
    dsb sy
    tlbi vmalle1
    dsb sy
    mrs x9, sctlr_el1
    orr x9, x9, #1                     // M: stage 1 on
    msr sctlr_el1, x9
    isb
    ret

// add_to_physmap(x0 = space, x1 = gpfn), idx 0: Xen's result in x0
add_to_physmap:
    adr x9, xatp
    mov x10, #DOMID_SELF
    strh w10, [x9]
    strh wzr, [x9, #2]
    str w0, [x9, #4]
    str xzr, [x9, #8]
    str x1, [x9, #16]
    mov x16, #__HYPERVISOR_memory_op
    mov x0, #XENMEM_add_to_physmap
    mov x1, x9
    hvc #XEN_HYPERCALL_TAG
    ret

// get_param(x0 = index) -> x0 = value
get_param:
    adr x9, hvm_param
    mov x10, #DOMID_SELF
    strh w10, [x9]
    str w0, [x9, #4]
    str xzr, [x9, #8]
    mov x16, #__HYPERVISOR_hvm_op
    mov x0, #HVMOP_get_param
    mov x1, x9
    hvc #XEN_HYPERCALL_TAG
    ldr x0, [x9, #8]
    ret

// notify(x0 = port): EVTCHNOP_send
notify:
    adr x9, evtchn_send_arg
    str w0, [x9]
    mov x16, #__HYPERVISOR_event_channel_op
    mov x0, #EVTCHNOP_send
    mov x1, x9
    hvc #XEN_HYPERCALL_TAG
    ret

// shutdown(x0 = reason): SCHEDOP_shutdown, never returns
shutdown:
    adr x9, sched_arg
    str w0, [x9]
    mov x16, #__HYPERVISOR_sched_op
    mov x0, #SCHEDOP_shutdown
    mov x1, x9
    hvc #XEN_HYPERCALL_TAG
1:  b 1b

// console_write(x0 = buffer, x1 = length): into out[] of the console ring, then notify
console_write:
    stp x29, x30, [sp, #-16]!
    adr x9, console_ring
    ldr x9, [x9]
    mov x11, x0
    mov x12, x1
1:  cbz x12, 3f
    ldr w13, [x9, #CONS_OUT_PROD]
    ldr w14, [x9, #CONS_OUT_CONS]
    sub w15, w13, w14
    cmp w15, #2048
    b.lo 2f
    adr x0, console_port               // ring full: let xenconsoled drain it
    ldr x0, [x0]
    bl notify
    mov x16, #__HYPERVISOR_sched_op
    mov x0, #SCHEDOP_yield
    mov x1, #0
    hvc #XEN_HYPERCALL_TAG
    adr x9, console_ring
    ldr x9, [x9]
    b 1b
2:  ldrb w10, [x11], #1
    and x15, x13, #2047
    add x15, x15, x9
    strb w10, [x15, #CONS_OUT]
    add w13, w13, #1
    dmb sy                             // the byte before the index that publishes it
    str w13, [x9, #CONS_OUT_PROD]
    sub x12, x12, #1
    b 1b
3:  adr x0, console_port
    ldr x0, [x0]
    bl notify
    ldp x29, x30, [sp], #16
    ret

// puts(x0 = NUL-terminated string)
puts:
    mov x1, #0
1:  add x2, x0, x1
    ldrb w2, [x2]
    cbz w2, 2f
    add x1, x1, #1
    b 1b
2:  b console_write

// put_hex(x0 = value): "0x" and 16 hex digits
put_hex:
    adr x1, hex_buf
    add x1, x1, #18
    adr x4, hex_digits
    mov x2, #16
1:  sub x1, x1, #1
    and x3, x0, #15
    add x3, x4, x3
    ldrb w3, [x3]
    strb w3, [x1]
    lsr x0, x0, #4
    subs x2, x2, #1
    b.ne 1b
    adr x0, hex_buf
    mov x1, #18
    b console_write

// put_dec(x0 = unsigned value)
put_dec:
    adr x1, dec_buf
    add x1, x1, #20
    mov x2, #10
    mov x5, #0
1:  udiv x3, x0, x2
    msub x4, x3, x2, x0
    add x4, x4, #48
    sub x1, x1, #1
    strb w4, [x1]
    add x5, x5, #1
    mov x0, x3
    cbnz x0, 1b
    mov x0, x1
    mov x1, x5
    b console_write

// be32(x0 = address) -> x0: a big-endian 32-bit device-tree cell (uses x16, x17)
be32:
    ldrb w16, [x0]
    ldrb w17, [x0, #1]
    lsl x16, x16, #8
    orr x16, x16, x17
    ldrb w17, [x0, #2]
    lsl x16, x16, #8
    orr x16, x16, x17
    ldrb w17, [x0, #3]
    lsl x16, x16, #8
    orr x0, x16, x17
    ret

// streq(x0, x1: NUL-terminated strings) -> x0 = 1 when equal
streq:
1:  ldrb w2, [x0], #1
    ldrb w3, [x1], #1
    cmp w2, w3
    b.ne 2f
    cbnz w2, 1b
    mov x0, #1
    ret
2:  mov x0, #0
    ret

// fdt_hypervisor(x0 = the tree): walk the structure block for /hypervisor; store
// its compatible (hyp_compat), reg region 0 (gnttab_base) and interrupt (evtchn_ppi).
fdt_hypervisor:
    stp x29, x30, [sp, #-16]!
    mov x9, x0
    add x0, x9, #8                     // off_dt_struct
    bl be32
    add x10, x9, x0
    add x0, x9, #12                    // off_dt_strings
    bl be32
    add x11, x9, x0
    mov x12, #0                        // depth
    mov x15, #0                        // inside /hypervisor
.tok:
    mov x0, x10
    bl be32
    add x10, x10, #4
    cmp x0, #1
    b.eq .begin_node
    cmp x0, #2
    b.eq .end_node
    cmp x0, #3
    b.eq .prop
    cmp x0, #4
    b.eq .tok
    b .fdt_done                        // FDT_END
.begin_node:
    add x12, x12, #1
    cmp x12, #2
    b.ne .skip_name
    mov x0, x10
    adr x1, str_hypervisor
    bl streq
    mov x15, x0
.skip_name:
    ldrb w0, [x10], #1
    cbnz w0, .skip_name
    add x10, x10, #3
    and x10, x10, #0xfffffffffffffffc
    b .tok
.end_node:
    cmp x12, #2
    b.ne 1f
    cbnz x15, .fdt_done                // the end of /hypervisor
1:  sub x12, x12, #1
    b .tok
.prop:
    mov x0, x10
    bl be32
    mov x13, x0                        // length
    add x0, x10, #4
    bl be32
    add x14, x11, x0                   // name
    add x10, x10, #8                   // value
    cbz x15, .next_prop
    cmp x12, #2
    b.ne .next_prop
    mov x0, x14
    adr x1, str_reg
    bl streq
    cbz x0, 2f
    mov x0, x10                        // <address-hi address-lo size-hi size-lo>
    bl be32
    lsl x3, x0, #32
    add x0, x10, #4
    bl be32
    orr x0, x0, x3
    adr x1, gnttab_base
    str x0, [x1]
2:  mov x0, x14
    adr x1, str_interrupts
    bl streq
    cbz x0, 3f
    add x0, x10, #4                    // <type number flags>: a PPI's number counts from 16
    bl be32
    add x0, x0, #16
    adr x1, evtchn_ppi
    str x0, [x1]
3:  mov x0, x14
    adr x1, str_compatible
    bl streq
    cbz x0, .next_prop
    adr x1, hyp_compat
    str x10, [x1]
.next_prop:
    add x10, x10, x13
    add x10, x10, #3
    and x10, x10, #0xfffffffffffffffc
    b .tok
.fdt_done:
    ldp x29, x30, [sp], #16
    ret

// demand_map(x0 = a heap page's address): its level-3 entry (identity: VA = IPA), then
// the page zeroed through it, as a fresh page is
demand_map:
    adr x9, l3_heap
    mov x10, #HEAP_BASE
    sub x10, x0, x10
    lsr x10, x10, #12
    add x9, x9, x10, lsl #3
    movz x11, #0x0060, lsl #48         // UXN and PXN: the program's data, never executed
    movk x11, #0x743                   // a page: AF, inner shareable, EL0 and EL1 read/write
    orr x11, x11, x0
    str x11, [x9]
    dsb sy                             // the entry before the accesses through it
    isb
    mov x9, #512
1:  str xzr, [x0], #8
    subs x9, x9, #1
    b.ne 1b
    adr x9, demand_faults
    ldr x10, [x9]
    add x10, x10, #1
    str x10, [x9]
    ret

// sched_yield(): SCHEDOP_yield, the pCPU to whoever else can run (dom0's services)
sched_yield:
    mov x16, #__HYPERVISOR_sched_op
    mov x0, #SCHEDOP_yield
    mov x1, #0
    hvc #XEN_HYPERCALL_TAG
    ret

// secondary_start: where PSCI CPU_ON starts vCPU 1, at EL1 with its MMU off (VA = IPA,
// which the identity map makes the same addresses): note who it is, then CPU_OFF.
secondary_start:
    adr x9, secondary_ctx
    str x0, [x9]                       // the context id CPU_ON passed
    mrs x10, mpidr_el1
    adr x9, secondary_mpidr
    str x10, [x9]
    movz x0, #0x8400, lsl #16
    movk x0, #2                        // CPU_OFF: never returns while it is off
    hvc #0
1:  b 1b

// ---------------------------------------------------------------- exceptions
.align 2048
vectors:
    b bad_exception                    // current EL with SP_EL0: not used
.org vectors + 0x200
    b kernel_fault                     // current EL, SP_EL1: synchronous
.org vectors + 0x280
    b irq_entry                        // current EL, SP_EL1: IRQ
.org vectors + 0x400
    b user_sync                        // lower EL: synchronous (svc, aborts)
.org vectors + 0x480
    b irq_entry                        // lower EL: IRQ
.org vectors + 0x800

bad_exception:
kernel_fault:
    adr x0, msg_kfault
    bl puts
    mrs x0, esr_el1
    bl put_hex
    adr x0, msg_far
    bl puts
    mrs x0, far_el1
    bl put_hex
    adr x0, msg_elr
    bl puts
    mrs x0, elr_el1
    bl put_hex
    adr x0, msg_nl
    bl puts
    mov x0, #SHUTDOWN_crash
    b shutdown

// IRQ: acknowledge at the (virtual) CPU interface, handle, end it; registers kept
irq_entry:
    stp x0, x1, [sp, #-16]!
    stp x2, x3, [sp, #-16]!
    mrs x0, icc_iar1_el1
    cmp x0, #PPI_VTIMER
    b.ne 1f
    msr cntv_ctl_el0, xzr              // one tick is all the kernel wants
    adr x1, timer_ticks
    b 2f
1:  adr x1, evtchn_ppi
    ldr x1, [x1]
    cmp x0, x1
    b.ne 3f
    adr x1, shared_info_page           // evtchn_upcall_pending, pending_sel, then the ports
    strb wzr, [x1]
    str xzr, [x1, #8]
    str xzr, [x1, #48]
    adr x1, evtchn_upcalls
2:  ldr x2, [x1]
    add x2, x2, #1
    str x2, [x1]
3:  msr icc_eoir1_el1, x0
    ldp x2, x3, [sp], #16
    ldp x0, x1, [sp], #16
    eret

// A synchronous exception from the program: a system call, or a fault
user_sync:
    stp x29, x30, [sp, #-16]!
    stp x27, x28, [sp, #-16]!
    stp x25, x26, [sp, #-16]!
    stp x23, x24, [sp, #-16]!
    stp x21, x22, [sp, #-16]!
    stp x19, x20, [sp, #-16]!
    stp x17, x18, [sp, #-16]!
    stp x15, x16, [sp, #-16]!
    stp x13, x14, [sp, #-16]!
    stp x11, x12, [sp, #-16]!
    stp x9, x10, [sp, #-16]!
    stp x7, x8, [sp, #-16]!
    stp x5, x6, [sp, #-16]!
    stp x3, x4, [sp, #-16]!
    stp x1, x2, [sp, #-16]!
    mrs x9, elr_el1                    // kept: the drivers wait with interrupts on, and an
    mrs x10, spsr_el1                  // interrupt taken at EL1 overwrites both
    stp x9, x10, [sp, #-16]!
    mrs x9, esr_el1
    lsr x9, x9, #26
    cmp x9, #0x15
    b.ne .user_abort
    adr x9, syscalls
    ldr x10, [x9]
    add x10, x10, #1
    str x10, [x9]
    cmp x8, #SYS_write
    b.eq .sys_write
    cmp x8, #SYS_getpid
    b.eq .sys_getpid
    cmp x8, #SYS_brk
    b.eq .sys_brk
    cmp x8, #SYS_exit
    b.eq .sys_exit
    cmp x8, #SYS_pread64
    b.eq .sys_disk
    cmp x8, #SYS_pwrite64
    b.eq .sys_disk
    cmp x8, #SYS_lab_ping
    b.eq .sys_ping
    mov x0, #-ENOSYS
    b .sys_return
.sys_write:
    mov x19, x2
    mov x0, x1
    mov x1, x2
    bl console_write
    mov x0, x19
    b .sys_return
.sys_getpid:
    mov x0, #1
    b .sys_return
.sys_brk:
    adr x9, cur_brk
    ldr x10, [x9]
    cbz x0, 1f
    mov x11, #HEAP_BASE
    cmp x0, x11
    b.lo 1f
    mov x11, #HEAP_LIMIT
    cmp x0, x11
    b.hi 1f
    str x0, [x9]
    mov x10, x0
1:  mov x0, x10
    b .sys_return
// pread64/pwrite64(fd 3, buffer, count, offset): whole sectors, at most a page, through
// blkfront's data page (the kernel copies between it and the program's buffer)
.sys_disk:
    adr x9, blk_sectors
    ldr x9, [x9]
    mov x10, x0
    mov x0, #-ENODEV
    cbz x9, .sys_return
    mov x0, #-EBADF
    cmp x10, #DISK_FD
    b.ne .sys_return
    mov x0, #-EINVAL
    orr x9, x2, x3
    tst x9, #SECTOR_SIZE - 1
    b.ne .sys_return
    cbz x2, .sys_return
    mov x9, #4096
    cmp x2, x9
    b.hi .sys_return
    mov x19, x1                        // the buffer
    mov x20, x2                        // the count
    mov x21, x3                        // the offset
    cmp x8, #SYS_pwrite64
    b.ne 1f
    adr x0, blk_page
    bl kmemcpy
    mov x0, #BLKIF_OP_WRITE
    lsr x1, x21, #9
    lsr x2, x20, #9
    bl blkfront_rw
    cbnz x0, .sys_return
    mov x0, x20
    b .sys_return
1:  mov x0, #BLKIF_OP_READ
    lsr x1, x21, #9
    lsr x2, x20, #9
    bl blkfront_rw
    cbnz x0, .sys_return
    mov x0, x19
    adr x1, blk_page
    mov x2, x20
    bl kmemcpy
    mov x0, x20
    b .sys_return
.sys_ping:
    bl net_ping
    b .sys_return
.sys_exit:
    mov x19, x0
    adr x0, msg_exit
    bl puts
    mov x0, x19
    bl put_dec
    adr x0, msg_syscalls
    bl puts
    adr x0, syscalls
    ldr x0, [x0]
    bl put_dec
    adr x0, msg_ticks
    bl puts
    adr x0, timer_ticks
    ldr x0, [x0]
    bl put_dec
    adr x0, msg_upcalls
    bl puts
    adr x0, evtchn_upcalls
    ldr x0, [x0]
    bl put_dec
    adr x0, msg_demand
    bl puts
    adr x0, demand_faults
    ldr x0, [x0]
    bl put_dec
    adr x0, msg_nl
    bl puts
    mov x0, #SHUTDOWN_poweroff
    b shutdown
.sys_return:
    msr daifset, #2                    // nothing may be taken between these and eret
    ldp x9, x10, [sp], #16
    msr elr_el1, x9
    msr spsr_el1, x10
    ldp x1, x2, [sp], #16
    ldp x3, x4, [sp], #16
    ldp x5, x6, [sp], #16
    ldp x7, x8, [sp], #16
    ldp x9, x10, [sp], #16
    ldp x11, x12, [sp], #16
    ldp x13, x14, [sp], #16
    ldp x15, x16, [sp], #16
    ldp x17, x18, [sp], #16
    ldp x19, x20, [sp], #16
    ldp x21, x22, [sp], #16
    ldp x23, x24, [sp], #16
    ldp x25, x26, [sp], #16
    ldp x27, x28, [sp], #16
    ldp x29, x30, [sp], #16
    eret
// A data abort from the program: a page of its heap touched for the first time
// (a translation fault at level 3, inside brk) is mapped; anything else is a fault.
.user_abort:
    cmp x9, #0x24                      // EC: data abort from a lower EL
    b.ne .user_fault
    mrs x10, esr_el1
    and x10, x10, #0x3f
    cmp x10, #0x07                     // DFSC: translation fault, level 3
    b.ne .user_fault
    mrs x10, far_el1
    mov x11, #HEAP_BASE
    cmp x10, x11
    b.lo .user_fault
    adr x11, cur_brk
    ldr x11, [x11]
    cmp x10, x11
    b.hs .user_fault
    str x0, [sp, #-16]!                // the program's x0: no system call result here
    and x0, x10, #0xfffffffffffff000
    bl demand_map
    ldr x0, [sp], #16
    b .sys_return                      // back to the instruction that faulted
.user_fault:
    adr x0, msg_ufault
    bl puts
    mrs x0, esr_el1
    bl put_hex
    adr x0, msg_far
    bl puts
    mrs x0, far_el1
    bl put_hex
    adr x0, msg_nl
    bl puts
    mov x0, #SHUTDOWN_crash
    b shutdown

// ---------------------------------------------------------------- PV drivers
.include "drivers/xenbus.s"
.include "drivers/gnttab.s"
.include "drivers/blkfront.s"
.include "drivers/netfront.s"
.include "drivers/net.s"
.include "shell.s"

// ---------------------------------------------------------------- data
msg_banner:     .asciz "xenlab arm64 kernel: EL1 guest of Xen "
msg_dot:        .asciz "."
msg_banner_end: .asciz " (one guest type: no PV/HVM split)\n"
msg_found:      .asciz "xen: device tree /hypervisor: compatible \""
msg_gnttab:     .asciz "\", grant table at "
msg_ppi:        .asciz ", event channel PPI "
msg_shinfo:     .asciz "xen: shared_info mapped at IPA "
msg_xs:         .asciz "xenstore: read name = "
msg_blk:        .asciz "blkfront: xvda "
msg_blk_ok:     .asciz " sectors, connected to the backend over a granted ring\n"
msg_net:        .asciz "netfront: vif "
msg_net_ok:     .asciz "connected to the backend (rx-copy, two rings)\n"
msg_dev_none:   .asciz "none\n"
str_name:       .asciz "name"
msg_exec:       .asciz "kernel: starting the program at EL0\n"
msg_psci:       .asciz "psci: CPU_ON started vCPU 1 (MPIDR "
msg_psci_ctx:   .asciz ", context id "
msg_psci_off:   .asciz "); it turned itself off with CPU_OFF\n"
msg_exit:       .asciz "kernel: program exited with code "
msg_syscalls:   .asciz "; syscalls "
msg_ticks:      .asciz "; virtual timer interrupts (PPI 27) "
msg_upcalls:    .asciz "; event channel upcalls "
msg_demand:     .asciz "; heap pages mapped on demand "
msg_kfault:     .asciz "kernel: exception at EL1, ESR "
msg_ufault:     .asciz "kernel: the program faulted, ESR "
msg_far:        .asciz " FAR "
msg_elr:        .asciz " ELR "
msg_nl:         .asciz "\n"
str_hypervisor: .asciz "hypervisor"
str_reg:        .asciz "reg"
str_interrupts: .asciz "interrupts"
str_compatible: .asciz "compatible"
hex_digits:     .ascii "0123456789abcdef"
hex_buf:        .ascii "0x0000000000000000"
dec_buf:        .zero 20
.align 8
xen_version:    .quad 0
hyp_compat:     .quad 0
gnttab_base:    .quad 0
evtchn_ppi:     .quad 0
console_ring:   .quad 0
console_port:   .quad 0
store_ring:     .quad 0
store_port:     .quad 0
timer_ticks:    .quad 0
evtchn_upcalls: .quad 0
secondary_mpidr: .quad 0
secondary_ctx:  .quad 0
syscalls:       .quad 0
demand_faults:  .quad 0
cur_brk:        .quad HEAP_BASE
xatp:           .zero 24
hvm_param:      .zero 16
evtchn_send_arg: .zero 8
sched_arg:      .zero 8
.align 4096
l1_table:       .zero 4096
l2_low:         .zero 4096
l2_ram:         .zero 4096
l3_heap:        .zero 8192
kstack:         .zero 8192
kstack_top:
shared_info_page: .zero 4096
