; The Xen platform PCI device (vendor 0x5853, device 0x0001) and the unplug
; protocol, as Linux's xen-platform-pci and platform-pci-unplug.c use them.
;
; An HVM guest is offered its disk and network card twice: as emulated
; devices by the device model, and as PV devices (a vbd and a vif in
; xenstore, served by the backends in dom0). A guest must not drive one disk
; through two paths at once, so before its PV drivers start it asks the
; device model to unplug the emulated ones
; (docs/misc/hvm-emulated-unplug.pandoc): read the magic at port 0x10, the
; protocol version at 0x12, tell it who we are (product number to 0x12,
; build number to 0x10), re-read the magic (0xd249 means these drivers are
; blacklisted: keep the emulated devices), then write the unplug mask to 0x10.
;
; PCI configuration space is reached with mechanism #1: the address
; (enable bit, bus, device, function, register) to port 0xCF8, the data
; through port 0xCFC.
;
; xen_blk_init / xen_blk_rw (OP_BLK_INIT, OP_BLK_RW) and xen_net_init /
; xen_net_send / xen_net_poll (OP_NET_*) are the HVM kernels' with PV
; drivers: blkfront and netfront once the emulated devices are unplugged,
; else the emulated IDE disk and NE2000. The including flavour includes
; ide.s, ne2000.s, blkfront.s and netfront.s (with xenbus.s, gnttab.s and
; evtchn.s) and defines hypercall_page.

.equ PCI_CONFIG_ADDRESS, 0xcf8
.equ PCI_CONFIG_DATA,    0xcfc
.equ PCI_ENABLE,         0x80000000
.equ PCI_INTERRUPT_LINE, 0x3c
.equ XEN_PLATFORM_ID,    0x00015853      ; device 0x0001 << 16 | vendor 0x5853

.equ XEN_IOPORT_MAGIC,   0x10            ; read word: the magic; write word: unplug mask; write dword: build
.equ XEN_IOPORT_PROTOVER, 0x12           ; read byte: protocol version; write word: product
.equ XEN_IOPORT_LOG,     0x12            ; write byte: one character of a log line
.equ XEN_IOPORT_MAGIC_VAL, 0x49d2
.equ XEN_IOPORT_BLACKLISTED, 0xd249
.equ XEN_IOPORT_LINUX_PRODNUM, 3         ; product 3 is Linux (include/xen/platform_pci.h)
.equ XEN_PV_DRIVER_BUILD, 1              ; Linux sends its version code; the lab's drivers are build 1
.equ XEN_UNPLUG_ALL_IDE_DISKS, 1
.equ XEN_UNPLUG_ALL_NICS, 2

; platform_state values, after platform_init
.equ PLATFORM_NONE,        0             ; no platform device: emulated devices only
.equ PLATFORM_NO_PROTOCOL, 1             ; the device, but no unplug protocol behind port 0x10
.equ PLATFORM_BLACKLISTED, 2             ; the device model refuses these drivers
.equ PLATFORM_UNPLUGGED,   3             ; emulated disks and NICs gone: use the PV drivers

.text

; pci_config_read(edi = config address, register included) -> eax = the dword
pci_config_read:
    mov eax, edi
    and eax, 0xfffffffc
    mov dx, PCI_CONFIG_ADDRESS
    out dx, eax
    mov dx, PCI_CONFIG_DATA
    in eax, dx
    ret

; platform_find() -> rax = config address of the platform device's function 0, or 0
; Bus 0 is all there is: try each slot's function 0.
platform_find:
    push rbx
    xor ebx, ebx
.slot:
    mov edi, ebx
    shl edi, 11
    or edi, PCI_ENABLE
    call pci_config_read
    cmp eax, XEN_PLATFORM_ID
    je .found
    inc ebx
    cmp ebx, 32
    jb .slot
    xor eax, eax
    pop rbx
    ret
.found:
    mov eax, ebx
    shl eax, 11
    or eax, PCI_ENABLE
    pop rbx
    ret

; platform_init(): find the device and unplug the emulated disks and NICs.
; Sets platform_state (and platform_pci, platform_irq) and prints what happened.
platform_init:
    call platform_find
    mov [rip + platform_pci], rax
    test rax, rax
    jz .absent
    lea rdi, [rax + PCI_INTERRUPT_LINE]
    call pci_config_read
    movzx eax, al
    mov [rip + platform_irq], rax
    ; 1. the magic, 2. the protocol version
    mov dx, XEN_IOPORT_MAGIC
    in ax, dx
    cmp ax, XEN_IOPORT_MAGIC_VAL
    jne .no_protocol
    mov dx, XEN_IOPORT_PROTOVER
    in al, dx
    test al, al
    jz .no_protocol
    ; 3. product, 4. build number
    mov dx, XEN_IOPORT_PROTOVER
    mov ax, XEN_IOPORT_LINUX_PRODNUM
    out dx, ax
    mov dx, XEN_IOPORT_MAGIC
    mov eax, XEN_PV_DRIVER_BUILD
    out dx, eax
    ; 5. the magic again: reversed if the device model blacklists this build
    in ax, dx
    cmp ax, XEN_IOPORT_MAGIC_VAL
    jne .blacklisted
    lea rdi, [rip + msg_platform_log]
    call platform_log
    ; 6. the unplug mask
    mov dx, XEN_IOPORT_MAGIC
    mov ax, XEN_UNPLUG_ALL_IDE_DISKS | XEN_UNPLUG_ALL_NICS
    out dx, ax
    mov qword [rip + platform_state], PLATFORM_UNPLUGGED
    lea rdi, [rip + msg_platform_unplugged]
    jmp puts
.absent:
    mov qword [rip + platform_state], PLATFORM_NONE
    lea rdi, [rip + msg_platform_absent]
    jmp puts
.no_protocol:
    mov qword [rip + platform_state], PLATFORM_NO_PROTOCOL
    lea rdi, [rip + msg_platform_no_protocol]
    jmp puts
.blacklisted:
    mov qword [rip + platform_state], PLATFORM_BLACKLISTED
    lea rdi, [rip + msg_platform_blacklisted]
    jmp puts

; xen_blk_init() -> rax = sectors or -errno
xen_blk_init:
    cmp qword [rip + platform_state], PLATFORM_UNPLUGGED
    je .pv
    lea rax, [rip + ide_rw]
    mov [rip + xen_blk_rw_fn], rax
    jmp ide_init
.pv:
    call blkfront_init
    test rax, rax
    js .out
    lea rcx, [rip + blkfront_rw]
    mov [rip + xen_blk_rw_fn], rcx
.out:
    ret

; xen_blk_rw(rdi = 0 read / 1 write, rsi = sector, rdx = buffer, rcx = sectors)
xen_blk_rw:
    jmp [rip + xen_blk_rw_fn]

; xen_net_init() -> rax = 0 or -errno: netfront after an unplug, else the NE2000
xen_net_init:
    cmp qword [rip + platform_state], PLATFORM_UNPLUGGED
    je .pv
    lea rax, [rip + ne2k_send]
    mov [rip + xen_net_send_fn], rax
    lea rax, [rip + ne2k_poll]
    mov [rip + xen_net_poll_fn], rax
    jmp ne2k_init
.pv:
    lea rax, [rip + netfront_send]
    mov [rip + xen_net_send_fn], rax
    lea rax, [rip + netfront_poll]
    mov [rip + xen_net_poll_fn], rax
    jmp netfront_init

xen_net_send:
    jmp [rip + xen_net_send_fn]

xen_net_poll:
    jmp [rip + xen_net_poll_fn]

; platform_log(rdi = NUL-terminated line, newline included): to the device
; model's log, one byte per out to port 0x12
platform_log:
    mov dx, XEN_IOPORT_LOG
.byte_out:
    mov al, [rdi]
    test al, al
    jz .done
    out dx, al
    inc rdi
    jmp .byte_out
.done:
    ret

.data
platform_state: .quad PLATFORM_NONE
platform_pci:   .quad 0
platform_irq:   .quad 0
xen_blk_rw_fn:  .quad no_device
xen_net_send_fn: .quad no_device
xen_net_poll_fn: .quad no_device
msg_platform_log:         .asciz "xenlab PV drivers: unplugging emulated disks and NICs\n"
msg_platform_unplugged:   .asciz "platform: unplugged emulated disks and NICs\n"
msg_platform_absent:      .asciz "platform: no Xen platform PCI device; keeping the emulated disks and NICs\n"
msg_platform_no_protocol: .asciz "platform: no unplug protocol at port 0x10; keeping the emulated disks and NICs\n"
msg_platform_blacklisted: .asciz "platform: the device model blacklists these PV drivers (magic 0xd249); keeping the emulated disks and NICs\n"
