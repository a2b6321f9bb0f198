// Grant table and event-channel routines of the Arm kernel's PV drivers.
//
// The grant table is frame 0 of the domain's table, mapped with XENMEM_add_to_physmap
// at the address the device tree's /hypervisor node gave (gnttab_base): 512 entries of
// struct grant_entry_v1 {u16 flags; domid_t domid; u32 frame} (public/grant_table.h).
// Refs 0-7 are reserved (GNTTAB_NR_RESERVED_ENTRIES); the drivers own fixed refs above.
// An Arm guest is translated: the frame it grants is its gfn (an IPA >> 12), which
// its identity stage 1 makes the kernel's address >> 12.

.equ GTF_permit_access,     1
.equ GTF_readonly,          4
.equ GTF_reading,           8
.equ GTF_writing,           16
.equ EVTCHNOP_alloc_unbound, 6
.equ EBUSY,                 16

// gnttab_grant(x0 = ref, x1 = domid, x2 = gfn, x3 = 1 for read-only) (leaf)
gnttab_grant:
    adr x9, gnttab_base
    ldr x9, [x9]
    add x9, x9, x0, lsl #3
    str w2, [x9, #4]
    strh w1, [x9, #2]
    dmb sy                             // domid and frame before the flags that make it valid
    mov x10, #GTF_permit_access
    cbz x3, 1f
    orr x10, x10, #GTF_readonly
1:  strh w10, [x9]
    ret

// gnttab_end(x0 = ref) -> x0 = 0, or -EBUSY while the backend still maps it (leaf)
gnttab_end:
    adr x9, gnttab_base
    ldr x9, [x9]
    add x9, x9, x0, lsl #3
    ldrh w10, [x9]
    tst w10, #GTF_reading | GTF_writing
    b.ne 1f
    strh wzr, [x9]
    mov x0, #0
    ret
1:  mov x0, #-EBUSY
    ret

// evtchn_alloc_unbound(x0 = remote domid) -> x0 = a new port of ours for it, or -errno
evtchn_alloc_unbound:
    adr x9, evtchn_alloc_arg           // struct evtchn_alloc_unbound {dom, remote_dom, port}
    mov x10, #DOMID_SELF
    strh w10, [x9]
    strh w0, [x9, #2]
    str wzr, [x9, #4]
    mov x16, #__HYPERVISOR_event_channel_op
    mov x0, #EVTCHNOP_alloc_unbound
    mov x1, x9
    hvc #XEN_HYPERCALL_TAG
    cbnz x0, 1f
    adr x9, evtchn_alloc_arg
    ldr w0, [x9, #4]
1:  ret

// kmemcpy(x0 = destination, x1 = source, x2 = bytes) (leaf)
kmemcpy:
    cbz x2, 2f
1:  ldrb w9, [x1], #1
    strb w9, [x0], #1
    subs x2, x2, #1
    b.ne 1b
2:  ret

// wait_ring(x0 = address of a u32 producer index, x1 = the consumer's value): wait in wfi
// until the producer moved past it (leaf)
wait_ring:
1:  msr daifset, #2
    ldr w9, [x0]
    cmp w9, w1
    b.ne 2f
    wfi
    msr daifclr, #2
    b 1b
2:  msr daifclr, #2
    dmb sy
    ret

.align 8
evtchn_alloc_arg: .zero 8
