"""The devices Xen emulates itself for HVM and PVH guests, and how an access finds them.

A real HVM guest's PC is split between two emulators. Xen emulates the
platform's timing and interrupt devices, which are too hot to send to dom0:
the local APIC of each vCPU (vlapic.c, MMIO at 0xfee00000), the IO-APIC
(vioapic.c, 0xfec00000), the HPET (hpet.c, 0xfed00000), the two 8259A PICs
(vpic.c, ports 0x20-0x21, 0xa0-0xa1, ELCR 0x4d0-0x4d1), the 8254 PIT and the
speaker port (emul-i8254.c, 0x40-0x43, 0x61), the RTC (rtc.c, 0x70-0x71), the
ACPI PM1a event block and PM timer (pmtimer.c) and the debug port 0xe9
(hvm.c). Everything else (IDE, the UART, the NIC, PCI configuration, the
ACPI sleep register, the Xen platform device) is the device model's, QEMU in
dom0, reached by an ioreq; QEMU raises and lowers its devices' interrupt
lines with dm_op (:mod:`.irq`). A PVH guest has only the local APIC and the debug
port (XEN_X86_EMU_LAPIC; no device model at all).

``install_hvm()`` / ``install_pvh()`` build a domain's devices and register
their handlers in its intercept table (:mod:`.intercept`), in the order
Xen's ``hvm_domain_initialise()`` and ``hvm_vcpu_initialise()`` do.
"""

from __future__ import annotations

from ...hw.devices.board import Pic8259, Pit8254
from ..abi.hvm import HVM_PARAM_HPET_ENABLED
from .debugcon import XEN_HVM_DEBUGCONS_IOPORT, DebugConsolePort
from .hpet import Hpet
from .intercept import IoIntercept
from .irq import HvmIrq
from .pmtimer import EVT_OFFSET, EVT_SIZE, TMR_OFFSET, TMR_SIZE, PmTimer
from .rtc import Rtc
from .vioapic import Vioapic
from .vlapic import Vlapic
from .vpic import VpicPorts
from .vpit import VpitPorts


def install_hvm(host, dom) -> None:
    """hvm_domain_initialise() and hvm_vcpu_initialise() for an HVM domain."""
    devices = dom.devices
    tab = devices["intercept"] = IoIntercept()
    devices["vpic"] = Pic8259()
    devices["vpic_io"] = VpicPorts()
    tab.register_portio_handler(0x20, 2, "vpic_io")          # vpic_init()
    tab.register_portio_handler(0xA0, 2, "vpic_io")
    tab.register_portio_handler(0x4D0, 2, "vpic_io")
    devices["vioapic"] = Vioapic()
    tab.register_mmio_handler("vioapic")                     # vioapic_init()
    devices["hvm_irq"] = HvmIrq()                            # hvm_irq: the lines dm_op drives
    devices["rtc"] = Rtc()
    tab.register_portio_handler(0x70, 2, "rtc")              # rtc_init()
    devices["debugcon"] = DebugConsolePort()
    tab.register_portio_handler(XEN_HVM_DEBUGCONS_IOPORT, 1, "debugcon")
    devices["vlapic"] = Vlapic(len(dom.vcpus))
    tab.register_mmio_handler("vlapic")                      # vlapic_init()
    v0 = dom.vcpus[0]
    devices["vpit"] = Pit8254(host.cpu_hz, lambda: v0.cpu.cycles)
    devices["vpit_io"] = VpitPorts()
    tab.register_portio_handler(0x40, 4, "vpit_io")          # pit_init()
    tab.register_portio_handler(0x61, 1, "vpit_io")
    devices["pmtimer"] = PmTimer()
    tab.register_movable_portio_handler("pmtimer", TMR_OFFSET, TMR_SIZE)   # pmtimer_init()
    tab.register_movable_portio_handler("pmtimer", EVT_OFFSET, EVT_SIZE)
    devices["hpet"] = Hpet()
    tab.register_mmio_handler("hpet")                        # hpet_init(), which also
    dom.hvm_params[HVM_PARAM_HPET_ENABLED] = 1               # sets the param the toolstack may clear


def install_pvh(host, dom) -> None:
    """A PVH domain: the local APIC (XEN_X86_EMU_LAPIC) and the debug port only."""
    devices = dom.devices
    tab = devices["intercept"] = IoIntercept()
    devices["debugcon"] = DebugConsolePort()
    tab.register_portio_handler(XEN_HVM_DEBUGCONS_IOPORT, 1, "debugcon")
    devices["vlapic"] = Vlapic(len(dom.vcpus))
    tab.register_mmio_handler("vlapic")
