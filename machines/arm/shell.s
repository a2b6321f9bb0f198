// The Arm kernel's shell: a prompt on the PV console and a few commands, as the x86
// kernels' common/shell.s has them. It runs instead of the program when the guest's
// command line says "shell" (xl.cfg's cmdline or extra).
//
//   help            the commands
//   echo TEXT       TEXT, back on the console
//   disk read N     read sector N through blkfront and show its start as text
//   ping            ICMP echo to dom0 (10.0.0.1) through netfront
//   run             start the workload at EL0 (does not come back)
//   poweroff        SCHEDOP_shutdown(poweroff)
//
// Input is the console ring's in[] (struct xencons_interface: in[1024] at 0, in_cons at
// 3072, in_prod at 3076): xenconsoled writes what is typed there (xl console, the
// screen's console, the session's console command) and notifies the console's event
// channel; the shell waits in wfi for that event's PPI, reads, advances in_cons and
// notifies back so that xenconsoled can put in the rest. What it reads it echoes.

.equ CONS_IN_CONS,      3072
.equ CONS_IN_PROD,      3076
.equ SH_LINE_MAX,       127

shell_main:
    adr x0, sh_banner
    bl puts
1:  adr x0, sh_prompt
    bl puts
    bl sh_readline
    adr x19, sh_line
    mov x0, x19
    adr x1, sh_cmd_help
    bl sh_match
    cbnz x0, .sh_help
    mov x0, x19
    adr x1, sh_cmd_echo
    bl sh_match
    cbnz x0, .sh_echo
    mov x0, x19
    adr x1, sh_cmd_disk
    bl sh_match
    cbnz x0, .sh_disk
    mov x0, x19
    adr x1, sh_cmd_ping
    bl sh_match
    cbnz x0, .sh_ping
    mov x0, x19
    adr x1, sh_cmd_run
    bl sh_match
    cbnz x0, .sh_run
    mov x0, x19
    adr x1, sh_cmd_poweroff
    bl sh_match
    cbnz x0, .sh_poweroff
    ldrb w9, [x19]
    cbz w9, 1b                         // an empty line
    adr x0, sh_unknown
    bl puts
    b 1b
.sh_help:
    adr x0, sh_help_text
    bl puts
    b 1b
.sh_echo:
    bl puts                            // x0: the rest of the line
    adr x0, msg_nl
    bl puts
    b 1b
.sh_disk:
    adr x1, sh_cmd_read
    bl sh_match
    cbz x0, 3f
    bl parse_dec
    mov x20, x0
    cmp x0, #0
    b.lt 3f
    adr x9, blk_sectors
    ldr x9, [x9]
    cbz x9, 4f
    cmp x20, x9
    b.hs 3f
    mov x0, #BLKIF_OP_READ
    mov x1, x20
    mov x2, #1
    bl blkfront_rw
    cbnz x0, 5f
    adr x0, sh_sector
    bl puts
    mov x0, x20
    bl put_dec
    adr x0, sh_colon
    bl puts
    adr x9, blk_page                   // its first 64 bytes, unprintable ones as '.'
    adr x10, sh_text
    mov x11, #64
2:  ldrb w12, [x9], #1
    cmp w12, #32
    b.lo 6f
    cmp w12, #126
    b.ls 7f
6:  mov w12, #46
7:  strb w12, [x10], #1
    subs x11, x11, #1
    b.ne 2b
    strb wzr, [x10]
    adr x0, sh_text
    bl puts
    adr x0, msg_nl
    bl puts
    b 1b
3:  adr x0, sh_disk_usage
    bl puts
    b 1b
4:  adr x0, sh_no_disk
    bl puts
    b 1b
5:  adr x0, sh_disk_error
    bl puts
    b 1b
.sh_ping:
    movz x0, #0x0a00, lsl #16
    movk x0, #0x0001
    bl net_ping
    adr x9, sh_ping_ok
    cbz x0, 8f
    adr x9, sh_no_net
    cmn x0, #ENODEV
    b.eq 8f
    adr x9, sh_ping_lost
8:  mov x0, x9
    bl puts
    b 1b
.sh_run:
    b start_program
.sh_poweroff:
    mov x0, #SHUTDOWN_poweroff
    b shutdown

// sh_match(x0 = line, x1 = command) -> x0 = the text after the command and its spaces when
// the line's first word is the command, else 0 (leaf)
sh_match:
1:  ldrb w9, [x1], #1
    cbz w9, 2f
    ldrb w10, [x0], #1
    cmp w9, w10
    b.eq 1b
    mov x0, #0
    ret
2:  ldrb w10, [x0]
    cbz w10, 4f
    cmp w10, #32
    b.ne 5f
3:  ldrb w10, [x0]
    cmp w10, #32
    b.ne 4f
    add x0, x0, #1
    b 3b
4:  ret
5:  mov x0, #0
    ret

// sh_readline(): one line into sh_line (NUL-terminated), echoed as typed
sh_readline:
    stp x29, x30, [sp, #-16]!
    stp x19, x20, [sp, #-16]!
    mov x19, #0
1:  bl sh_getc
    mov x20, x0
    cmp x20, #10                       // newline
    b.eq 3f
    cmp x20, #13                       // carriage return
    b.eq 3f
    cmp x20, #0x7f                     // DEL or backspace: the last character goes
    b.eq 4f
    cmp x20, #8
    b.eq 4f
    cmp x19, #SH_LINE_MAX
    b.hs 1b
    adr x9, sh_line
    add x9, x9, x19
    strb w20, [x9]
    add x19, x19, #1
    adr x0, sh_char
    strb w20, [x0]
    mov x1, #1
    bl console_write
    b 1b
4:  cbz x19, 1b
    sub x19, x19, #1
    adr x0, sh_erase
    mov x1, #3
    bl console_write
    b 1b
3:  adr x9, sh_line
    add x9, x9, x19
    strb wzr, [x9]
    adr x0, msg_nl
    bl puts
    ldp x19, x20, [sp], #16
    ldp x29, x30, [sp], #16
    ret

// sh_getc() -> x0: the next byte typed, waiting in wfi for the console's event
sh_getc:
    stp x29, x30, [sp, #-16]!
1:  msr daifset, #2
    adr x9, console_ring
    ldr x9, [x9]
    ldr w10, [x9, #CONS_IN_PROD]
    ldr w11, [x9, #CONS_IN_CONS]
    cmp w10, w11
    b.ne 2f
    wfi
    msr daifclr, #2
    b 1b
2:  msr daifclr, #2
    dmb sy                             // the index before the byte it covers
    and x12, x11, #1023
    add x12, x12, x9
    ldrb w13, [x12]
    add w11, w11, #1
    dmb sy                             // the byte read before the slot is given back
    str w11, [x9, #CONS_IN_CONS]
    adr x10, sh_char
    strb w13, [x10]
    adr x0, console_port               // room in in[]: xenconsoled may put in the rest
    ldr x0, [x0]
    bl notify
    adr x0, sh_char
    ldrb w0, [x0]
    ldp x29, x30, [sp], #16
    ret

sh_banner:      .asciz "xenlab arm64 shell: type help for the commands\n"
sh_prompt:      .asciz "arm# "
sh_unknown:     .asciz "unknown command; type help\n"
sh_help_text:   .ascii "help          the commands\n"
                .ascii "echo TEXT     TEXT, back on the console\n"
                .ascii "disk read N   read sector N through blkfront\n"
                .ascii "ping          ICMP echo to dom0 (10.0.0.1) through netfront\n"
                .ascii "run           start the workload\n"
                .asciz "poweroff      power the guest off\n"
sh_cmd_help:    .asciz "help"
sh_cmd_echo:    .asciz "echo"
sh_cmd_disk:    .asciz "disk"
sh_cmd_read:    .asciz "read"
sh_cmd_ping:    .asciz "ping"
sh_cmd_run:     .asciz "run"
sh_cmd_poweroff: .asciz "poweroff"
sh_sector:      .asciz "sector "
sh_colon:       .asciz ": "
sh_disk_usage:  .asciz "usage: disk read N (N a sector of the disk)\n"
sh_no_disk:     .asciz "disk: no disk\n"
sh_disk_error:  .asciz "disk: I/O error\n"
sh_ping_ok:     .asciz "ping 10.0.0.1: reply\n"
sh_no_net:      .asciz "ping: no network\n"
sh_ping_lost:   .asciz "ping 10.0.0.1: no reply\n"
sh_erase:       .byte 8, 32, 8                 // back, blank, back
sh_char:        .zero 1
sh_line:        .zero SH_LINE_MAX + 1
sh_text:        .zero 68
.align 8
