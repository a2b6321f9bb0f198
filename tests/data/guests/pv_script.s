; A tiny 64-bit PV kernel for the tests: it runs a script of hypercalls.
;
; Xen's domain builder starts it in guest kernel mode (ring 3, its own page
; tables, the whole of its memory mapped read-write in the direct map except
; the page tables themselves). It installs nothing: no trap table, no
; callbacks, no stack switch. It walks `script`, one 128-byte entry at a
; time, and for each entry calls the hypercall page (or does one of the
; special operations below), storing rax in the entry's first result word.
;
; entry: +0 op, +8 .. +40 arguments a0..a4 (rdi rsi rdx r10 r8), +48 result
;   op < 0x1000    the hypercall with that number, through the hypercall page
;   OP_END         shutdown(poweroff); the script ends here
;   OP_LOAD        result = the quadword at a0
;   OP_STORE       the quadword at a0 = a1
;   OP_UD2         execute ud2 (with no trap table, Xen crashes the domain)

.include "common/layout.inc"

.equ OP_END,    0x1000
.equ OP_LOAD,   0x1001
.equ OP_STORE,  0x1002
.equ OP_UD2,    0x1003
.equ ENTRY,     128

.data
.org 0xffff888000300000
.bss
.org 0xffff888000340000

.text
.org 0xffff888000200000
_start:
    mov rsp, stack_top
    mov [rip + start_info], rsi
    lea rbx, [rip + script]
.next:
    mov rax, [rbx]
    mov rcx, OP_END
    cmp rax, rcx
    je .end
    mov rcx, OP_LOAD
    cmp rax, rcx
    je .load
    mov rcx, OP_STORE
    cmp rax, rcx
    je .store
    mov rcx, OP_UD2
    cmp rax, rcx
    je .ud2
    mov rdi, [rbx + 8]
    mov rsi, [rbx + 16]
    mov rdx, [rbx + 24]
    mov r10, [rbx + 32]
    mov r8, [rbx + 40]
    shl rax, 5
    lea rcx, [rip + hypercall_page]
    add rax, rcx
    call rax
.done:
    mov [rbx + 48], rax
    inc qword [rip + steps_done]
    add rbx, ENTRY
    jmp .next
.load:
    mov rcx, [rbx + 8]
    mov rax, [rcx]
    jmp .done
.store:
    mov rcx, [rbx + 8]
    mov rax, [rbx + 16]
    mov [rcx], rax
    xor eax, eax
    jmp .done
.ud2:
    ud2
.end:
    mov rdi, 2                       ; SCHEDOP_shutdown
    lea rsi, [rip + shutdown_reason]
    call hypercall_page + 29*32
.hang:
    jmp .hang

.align 4096
hypercall_page:
    .zero 4096

.data
start_info:      .quad 0
steps_done:      .quad 0
shutdown_reason: .dword 0
.align 4096
script:          .zero 8192
buf:             .zero 16384

.bss
.align 4096
stack:           .zero 16384
stack_top:
