; hello-user.s: the smallest user program, for `xenlab compare --workload` and as the program of a
; guest (lab_program = "examples/hello-user.s"). It runs unchanged on every kernel of the lab:
; Linux x86-64 system calls (docs/boot.md), write(1, line, len) and exit(0).

.equ SYS_write, 1
.equ SYS_exit,  60

.text
.org 0x400000                    ; user programs live in the lower half
_start:
    mov rdi, 1
    lea rsi, [rip + line]
    mov rdx, line_end - line
    mov rax, SYS_write
    syscall
    xor edi, edi
    mov rax, SYS_exit
    syscall

line:     .ascii "hello from user space: checksum 0x1\n"
line_end:
