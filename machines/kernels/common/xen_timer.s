; Xen's PV clock and one-shot timer, used as Linux uses them
; (arch/x86/xen/time.c): the clock is the pvclock record Xen keeps in the
; vCPU's vcpu_info (xen_clocksource_read), a deadline is
; VCPUOP_set_singleshot_timer (xen_vcpuop_set_next_event), and the 100 Hz
; tick Xen gives every PV vCPU is switched off first
; (VCPUOP_stop_periodic_timer, as xen_time_init does). The kernel is then
; tickless: a wait that needs a timeout arms one deadline, and an idle vCPU
; with nothing to time blocks with no timer armed at all, costing nothing
; until an event comes.
;
;   xen_timer_init() -> rax = 0 or -errno   VIRQ_TIMER bound, periodic tick off
;   xen_clock_ns() -> rax                   Xen's system time in ns
;   xen_timer_arm(rdi = deadline ns)        one VIRQ_TIMER at that time (0: none)
;
; Needs: xen.inc, shared_info_va (0 until shared_info is reachable),
; evtchn_set_handler (evtchn.s), timer_tick (kernel.s).

.equ PVCLOCK_VERSION,    32              ; struct vcpu_time_info at vcpu_info + 32
.equ PVCLOCK_TSC,        40              ; tsc_timestamp
.equ PVCLOCK_TIME,       48              ; system_time (ns at tsc_timestamp)
.equ PVCLOCK_MUL,        56              ; tsc_to_system_mul (a 32.32 fraction)
.equ PVCLOCK_SHIFT,      60              ; tsc_shift (signed)

.text

xen_timer_init:
    mov rdi, EVTCHNOP_bind_virq
    lea rsi, [rip + xen_timer_bind]
    call HC_event_channel_op
    test rax, rax
    jnz .out
    mov edi, [rip + xen_timer_bind + 8]
    lea rsi, [rip + xen_timer_event]
    call evtchn_set_handler
    mov rdi, VCPUOP_stop_periodic_timer
    xor esi, esi                     ; vCPU 0
    xor edx, edx
    call HC_vcpu_op
.out:
    ret

; xen_timer_event(rdi = port): the one-shot timer fired
xen_timer_event:
    jmp timer_tick

; xen_clock_ns() -> rax = system time in ns: (tsc - tsc_timestamp), shifted by
; tsc_shift, times tsc_to_system_mul / 2^32, plus system_time; read again if
; Xen rewrote the record meanwhile (its version is odd while it does).
; Clobbers rcx, rdx, rsi, r8.
xen_clock_ns:
    mov rsi, [rip + shared_info_va]
    test rsi, rsi
    jz .none
.again:
    mov r8d, [rsi + PVCLOCK_VERSION]
    test r8d, 1
    jnz .again
    rdtsc
    shl rdx, 32
    or rax, rdx
    sub rax, [rsi + PVCLOCK_TSC]
    movsx ecx, byte [rsi + PVCLOCK_SHIFT]
    test ecx, ecx
    js .right
    shl rax, cl
    jmp .scale
.right:
    neg ecx
    shr rax, cl
.scale:
    mov edx, [rsi + PVCLOCK_MUL]
    mul rdx
    shr rax, 32
    shl rdx, 32
    or rax, rdx
    add rax, [rsi + PVCLOCK_TIME]
    cmp r8d, [rsi + PVCLOCK_VERSION]
    jne .again
    ret
.none:
    xor eax, eax
    ret

; xen_timer_arm(rdi = deadline in ns of system time, 0 = none)
xen_timer_arm:
    test rdi, rdi
    jz .stop
    mov [rip + xen_timer_oneshot], rdi
    mov rdi, VCPUOP_set_singleshot_timer
    xor esi, esi
    lea rdx, [rip + xen_timer_oneshot]
    jmp HC_vcpu_op
.stop:
    mov rdi, VCPUOP_stop_singleshot_timer
    xor esi, esi
    xor edx, edx
    jmp HC_vcpu_op

.data
xen_timer_bind:    .dword VIRQ_TIMER, 0, 0        ; struct evtchn_bind_virq {virq, vcpu, port}
xen_timer_oneshot: .quad 0                        ; struct vcpu_set_singleshot_timer {timeout_abs_ns,
                   .dword 0, 0                    ;   flags (none: a past deadline fires at once)}
.text
