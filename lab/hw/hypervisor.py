"""What a CPU calls on the hypervisor that runs its guest: the ``Hypervisor`` protocol.

A CPU with no hypervisor (the bare machine) takes its own traps through its
IDT. One run by a hypervisor (``lab.xen.host.XenHost``) hands it, in root
operation, what the hypervisor intercepts: the syscall a PV kernel's hypercall
enters by, software interrupts, exceptions and external interrupts, every VM
exit, and a stop (a triple fault). The hypervisor attaches itself to the CPU
with ``Cpu.attach``, naming the vCPU the CPU runs and the emitter its events go
through; under shadow paging it also loads ``Cpu.shadow_cr3``, the root the
hardware walks instead of the guest's CR3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .cpu import Cpu
    from .faults import Fault, VmExit


class Hypervisor(Protocol):
    def on_syscall(self, cpu: Cpu, nxt: int) -> None:
        """``syscall`` in root operation: a PV guest's system call or hypercall."""

    def on_softint(self, cpu: Cpu, vector: int, nxt: int) -> None:
        """``int n`` / ``int3`` in root operation (``int 0x82``: a 32-bit PV hypercall)."""

    def on_exception(self, cpu: Cpu, fault: Fault) -> None:
        """A fault in root operation, which the hypervisor bounces to the PV guest's handler."""

    def on_interrupt(self, cpu: Cpu, vector: int) -> None:
        """An external interrupt taken in root operation."""

    def on_vmexit(self, cpu: Cpu, exc: VmExit) -> None:
        """A VM exit, after the CPU recorded it in the VMCS and entered root operation."""

    def on_cpu_stop(self, cpu: Cpu, reason: str) -> None:
        """The CPU stopped (a triple fault, an instruction it cannot run)."""
