; A tiny HVM kernel for the tests: it runs a script of hypercalls and probes.
;
; hvmloader jumps here with paging off, in ring 0, non-root: addresses are
; guest-physical. The kernel first looks for Xen as Linux does (CPUID leaf
; 0x40000000, then leaf 0x40000002 for the hypercall-page MSR), records what
; it saw in `xen_leaves`, and writes the hypercall page's address to the MSR.
; Then it walks `script` (see pv_script.s for the entry layout):
;
;   op < 0x1000    the hypercall with that number, through the hypercall page
;   OP_END         ACPI power-off
;   OP_LOAD        result = the quadword at a0 (a0 may lie outside RAM)
;   OP_STORE       the quadword at a0 = a1
;   OP_UD2         execute ud2 (no IDT: #UD, #GP, #DF, triple fault)
;   OP_IN          result = in from port a0, a1 bytes wide (rax zeroed first)
;   OP_USER_CALL   drop to ring 3 and make hypercall a0 from there, then
;                  come back to ring 0 with syscall
;   OP_CPUID       results = eax, ebx, ecx, edx of leaf a0, subleaf a1
;   OP_CALL        call the address a0 (a hypercall page slot, say)

.equ OP_END,       0x1000
.equ OP_LOAD,      0x1001
.equ OP_STORE,     0x1002
.equ OP_UD2,       0x1003
.equ OP_IN,        0x1004
.equ OP_USER_CALL, 0x1005
.equ OP_CPUID,     0x1006
.equ OP_CALL,      0x1007
.equ ENTRY,        128

.data
.org 0x300000
.bss
.org 0x340000

.text
.org 0x200000
_start:
    mov rsp, stack_top
    mov eax, 0x40000000
    xor ecx, ecx
    cpuid
    mov [rip + xen_leaves], eax
    mov [rip + xen_leaves + 4], ebx
    mov [rip + xen_leaves + 8], ecx
    mov [rip + xen_leaves + 12], edx
    cmp ebx, 0x566e6558              ; "XenV"
    jne .script
    mov eax, 0x40000002
    xor ecx, ecx
    cpuid
    mov [rip + xen_leaves + 16], eax
    mov [rip + xen_leaves + 20], ebx
    mov ecx, ebx
    lea rax, [rip + hypercall_page]
    mov rdx, rax
    shr rdx, 32
    wrmsr
.script:
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
    mov rcx, OP_IN
    cmp rax, rcx
    je .in
    mov rcx, OP_USER_CALL
    cmp rax, rcx
    je .user_call
    mov rcx, OP_CPUID
    cmp rax, rcx
    je .cpuid
    mov rcx, OP_CALL
    cmp rax, rcx
    je .call
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
.in:
    mov rdx, [rbx + 8]
    xor eax, eax
    mov rcx, [rbx + 16]
    cmp rcx, 1
    je .in1
    cmp rcx, 2
    je .in2
    in eax, dx
    jmp .done
.in1:
    in al, dx
    jmp .done
.in2:
    in ax, dx
    jmp .done
.cpuid:
    mov rax, [rbx + 8]
    mov rcx, [rbx + 16]
    mov [rip + saved_rbx], rbx
    cpuid
    mov rdi, rbx
    mov rbx, [rip + saved_rbx]
    mov [rbx + 48], rax
    mov [rbx + 56], rdi
    mov [rbx + 64], rcx
    mov [rbx + 72], rdx
    jmp .done_noresult
.call:
    mov rax, [rbx + 8]
    call rax
    jmp .done
.done_noresult:
    inc qword [rip + steps_done]
    add rbx, ENTRY
    jmp .next
.user_call:
    ; syscall brings ring 3 back here: EFER.SCE, STAR (kernel CS 0x08), LSTAR
    mov ecx, 0xc0000080
    rdmsr
    or eax, 1
    wrmsr
    mov ecx, 0xc0000081
    xor eax, eax
    mov edx, 0x00100008
    wrmsr
    mov ecx, 0xc0000082
    lea rax, [rip + .back]
    mov rdx, rax
    shr rdx, 32
    wrmsr
    mov [rip + saved_rsp], rsp
    push 0x1b                        ; ss
    lea rax, [rip + user_stack_top]
    push rax
    push 0x2                         ; rflags
    push 0x23                        ; cs: ring 3
    lea rax, [rip + .user]
    push rax
    iretq
.user:
    mov rax, [rbx + 8]
    shl rax, 5
    lea rcx, [rip + hypercall_page]
    add rax, rcx
    mov rdi, [rbx + 16]
    mov rsi, [rbx + 24]
    call rax
    mov [rbx + 48], rax
    syscall
.back:
    mov rsp, [rip + saved_rsp]
    inc qword [rip + steps_done]
    add rbx, ENTRY
    jmp .next
.end:
    mov dx, 0xb004
    mov ax, 0x2000
    out dx, ax
.hang:
    jmp .hang

.align 4096
hypercall_page:
    .zero 4096

.data
steps_done:      .quad 0
saved_rsp:       .quad 0
saved_rbx:       .quad 0
.align 16
xen_leaves:      .zero 32
.align 4096
script:          .zero 8192
buf:             .zero 16384

.bss
.align 4096
stack:           .zero 16384
stack_top:
user_stack:      .zero 4096
user_stack_top:
