; workload: the user program every mode runs unchanged.
;
; It does the kinds of work whose cost differs between bare metal, PV and
; HVM, and proves it did them right with a checksum:
;   1. system calls (getpid, many times)          -> syscall / bounce / no exit
;   2. grows its heap with brk and touches every   -> demand-paging page faults
;      fresh page                                     and page-table updates
;   3. computes over that memory (xorshift fill,   -> plain instructions, loads
;      FNV-1a fold)                                   and stores through the MMU
;   4. prints a report and the checksum            -> console output
;
; rdi at entry: the number of rounds of step 3 (0 means 1).

.equ SYS_write,   1
.equ SYS_brk,     12
.equ SYS_getpid,  39
.equ SYS_exit,    60
.equ CALLS,       64        ; getpid calls
.equ PAGES,       32        ; heap pages touched
.equ QWORDS,      PAGES * 512

.text
.org 0x400000
_start:
    mov r15, rdi
    test r15, r15
    jnz .have_rounds
    mov r15, 1
.have_rounds:
    lea rdi, [rip + msg_hello]
    call print

    ; 1. system calls: fold each pid into the checksum
    xor r14, r14
    xor r12, r12
.calls:
    mov eax, SYS_getpid
    syscall
    add r14, rax
    inc r12
    cmp r12, CALLS
    jb .calls

    ; 2. grow the heap and touch each new page once
    mov eax, SYS_brk
    xor edi, edi
    syscall
    mov rbx, rax                       ; heap start
    lea rdi, [rax + PAGES * 4096]
    mov eax, SYS_brk
    syscall
    mov rcx, PAGES
    mov rdi, rbx
.touch:
    mov [rdi], rcx                     ; first touch: a page fault the kernel serves
    add rdi, 4096
    dec rcx
    jnz .touch

    ; 3. compute: xorshift64 fill, then an FNV-1a fold, r15 rounds
    mov r13, 0x9e3779b97f4a7c15        ; xorshift state
.round:
    mov rdi, rbx
    mov rcx, QWORDS
.fill:
    mov rax, r13
    shl rax, 13
    xor r13, rax
    mov rax, r13
    shr rax, 7
    xor r13, rax
    mov rax, r13
    shl rax, 17
    xor r13, rax
    mov [rdi], r13
    add rdi, 8
    dec rcx
    jnz .fill
    mov rax, 0xcbf29ce484222325        ; FNV-1a offset basis
    mov rdx, 0x100000001b3             ; FNV prime
    mov rdi, rbx
    mov rcx, QWORDS
.fold:
    xor rax, [rdi]
    imul rax, rdx
    add rdi, 8
    dec rcx
    jnz .fold
    add r14, rax
    dec r15
    jnz .round

    ; 4. report
    lea rdi, [rip + msg_sum]
    call print
    mov rdi, r14
    call print_hex
    lea rdi, [rip + msg_nl]
    call print
    mov eax, SYS_exit
    xor edi, edi
    syscall
.hang:
    jmp .hang

; print(rdi = NUL-terminated string) through write(1, ...)
print:
    mov rsi, rdi
    xor edx, edx
.len:
    cmp byte [rsi + rdx], 0
    je .go
    inc rdx
    jmp .len
.go:
    mov eax, SYS_write
    mov edi, 1
    syscall
    ret

; print_hex(rdi = value)
print_hex:
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
    lea rsi, [rip + hexbuf]
    mov edx, 18
    syscall
    ret

.data
msg_hello:  .asciz "workload: system calls, fresh memory, computation\n"
msg_sum:    .asciz "workload: checksum "
msg_nl:     .asciz "\n"
digits:     .ascii "0123456789abcdef"
hexbuf:     .ascii "0x0000000000000000"
