; The lab kernel on bare metal: no hypervisor, the baseline for every Xen mode.
;
; The boot stub (common/boot_stub.s) turns on paging and jumps to kmain; from
; then on the shared kernel (common/kernel.s) runs, and every privileged
; operation it needs is one of the native operations (native_ops.s): the
; real instruction, executed at ring 0. Its disk is the IDE disk on the
; primary channel, driven by port I/O (common/ide.s).

.include "common/layout.inc"

; Where the kernel's sections live in the direct map (physical 2, 3 and 3.25 MiB).
.data
.org 0xffff888000300000
.bss
.org 0xffff888000340000

.include "common/boot_stub.s"

; ------------------------------------------------------------ native operations
.text
.org 0xffff888000200000
.equ TRAP_INIT_OP, native_trap_init
.equ CONSOLE_WRITE_OP, native_console_write
.equ IDLE_OP, native_idle
.equ CLOCK_NS_OP, native_clock_ns
.equ TIMER_ARM_OP, native_timer_arm
.equ SHUTDOWN_OP, native_shutdown
.equ TIMER_INIT_OP, native_timer_init
.equ BLK_INIT_OP, ide_init
.equ BLK_RW_OP, ide_rw
.equ NET_INIT_OP, ne2k_init
.equ NET_SEND_OP, ne2k_send
.equ NET_POLL_OP, ne2k_poll
.include "native_ops.s"
.include "common/ide.s"

.data
flavour_name:   .asciz "native, ring 0"

.include "common/ne2000.s"
.include "common/net.s"
.equ SHELL_CONSOLE_RING, 0              ; the shell reads COM1 (the 16550 UART)
.equ SHELL_SERIAL, 1                    ; COM1 is its console
.include "common/shell.s"
.include "common/kernel.s"
