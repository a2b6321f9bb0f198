; The console ring of a domU (struct xencons_interface, public/io/console.h):
; out[2048] at offset 1024, indexes out_cons and out_prod at 3080 and 3084.
; The kernel copies bytes in, publishes out_prod, and notifies its event
; channel; xenconsoled in dom0 drains the ring. Shared by the PV and PVH
; kernels, which define console_page, console_evtchn, HC_event_channel_op
; and HC_sched_op (and EVTCHNOP_send = 4).

.equ CONS_OUT,           1024
.equ CONS_OUT_SIZE,      2048
.equ CONS_OUT_CONS,      3080
.equ CONS_OUT_PROD,      3084

.text
; ring_console_write(rdi = buffer, rsi = length)
ring_console_write:
    ; copy into the console ring's out[], publish out_prod, notify dom0
    mov r8, [rip + console_page]
    mov r9d, [r8 + CONS_OUT_PROD]
.byte:
    test rsi, rsi
    jz .publish
    mov eax, r9d
    sub eax, [r8 + CONS_OUT_CONS]
    cmp eax, CONS_OUT_SIZE
    jae .full
    mov eax, r9d
    and eax, CONS_OUT_SIZE - 1
    mov cl, [rdi]
    mov [r8 + rax + CONS_OUT], cl
    inc r9d
    inc rdi
    dec rsi
    jmp .byte
.full:
    ; the ring is full: publish what we have, notify, and let dom0 drain it
    mov [r8 + CONS_OUT_PROD], r9d
    push rdi
    push rsi
    call console_notify
    mov rdi, 0                       ; SCHEDOP_yield
    xor esi, esi
    call HC_sched_op
    pop rsi
    pop rdi
    mov r8, [rip + console_page]
    jmp .byte
.publish:
    mov [r8 + CONS_OUT_PROD], r9d
console_notify:
    mov rdi, EVTCHNOP_send
    lea rsi, [rip + console_evtchn]
    call HC_event_channel_op
    ret


.data
console_page:   .quad 0
console_evtchn: .dword 0
.text
