"""The device model: QEMU in dom0, one instance per HVM domain.

On a real Xen host libxl starts ``qemu-system-i386 -xen-domid N -machine
xenfv`` in dom0 for every HVM guest. QEMU registers the I/O ports and memory
ranges it emulates with Xen as an ioreq server; when the guest touches one,
the access leaves the guest as a VM exit (IO_INSTRUCTION), Xen writes an
ioreq into the page it shares with QEMU and notifies QEMU's event channel,
QEMU emulates the access and answers, and Xen resumes the vCPU with the
result. In ``public/hvm/ioreq.h`` an ioreq goes through the states:

    STATE_IOREQ_READY (1)      Xen has filled it in; QEMU may take it
    STATE_IOREQ_INPROCESS (2)  QEMU is emulating the access
    STATE_IORESP_READY (3)     QEMU has answered; Xen completes the instruction

The lab's :class:`DeviceModel` is the dom0 service (``host.services
["device_model"]``) that Xen's HVM exit handler hands such accesses to. It
starts a :class:`Qemu` for an HVM domain the first time the domain's I/O
reaches it. Each access becomes three ``ioreq`` trace events named by those
states, with the device's own account of what it did in between (``ioreq``
events whose ``state`` is the device's words, such as "IDE0 master (hda):
READ SECTORS lba 5 count 1").

The simplification: the guest's vCPU waits for QEMU synchronously. The
access is emulated at once inside the exit; the vCPU is charged the whole
``ioreq_round_trip`` (exit to Xen, notification, dom0 scheduled, QEMU's
work, the reply, resumption), and dom0 is charged QEMU's own part of it as
dom0 work (``ioreq_dom0`` in the cost table, else half the round trip). On a
real host the vCPU would be descheduled and dom0 would run QEMU in between.

The machine QEMU emulates for an HVM guest here (see docs/device-model.md):

=========  =============================================  ==============================
PCI        device                                         I/O ports
=========  =============================================  ==============================
00:00.0    i440FX host bridge 8086:1237                   0xCF8-0xCFF (config space)
00:01.0    PIIX3 ISA bridge 8086:7000                     COM1 16550 UART 0x3F8-0x3FF
00:01.1    PIIX3 IDE 8086:7010                            0x1F0-0x1F7, 0x3F6; 0x170-0x177, 0x376
00:01.3    PIIX4 ACPI (power management)                  PM1a_CNT 0xB004-0xB005 (S5: power off)
00:03.0    Xen platform device 5853:0001                  0x10-0x1F (unplug), BAR0 0xC000
00:04.0+   NE2000 (ne2k_pci) 10ec:8029, one per ioemu vif  BAR0 0xC100, 0xC200 ...
=========  =============================================  ==============================

PVH domains have no device model at all (``claims`` is always False for
them), nor do PV domains.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from ..hw.devices import ones
from ..hw.devices.acpi import AcpiPmControl
from ..hw.devices.ide import IdeController, IdeDrive
from ..hw.devices.nic import BAR_SIZE as NIC_BAR_SIZE
from ..hw.devices.nic import Ne2000, mac_text, ne2k_pci_function
from ..hw.devices.pci import CMD_IO, CMD_MEMORY, CONFIG_DATA, Bar, PciFunction, PciHost, add_pc_chipset
from ..hw.devices.platform import (BAR0_SIZE, BAR1_SIZE, PLATFORM_CLASS, PLATFORM_REVISION, UNPLUG_ALL_DISKS,
                                  UNPLUG_ALL_NICS, UNPLUG_AUX_IDE_DISKS, UNPLUG_NVME_DISKS, XEN_PLATFORM_DEVICE,
                                  XEN_VENDOR, XenPlatform)
from ..hw.devices.serial import Uart16550
from ..hw.diskimage import open_disk, shared_images
from ..hw.snapshot import Plain
from ..xen.console import CONSOLE_LINE_MAX
from ..xen.vdev import irq as hvm_irq

STATE_IOREQ_NONE, STATE_IOREQ_READY, STATE_IOREQ_INPROCESS, STATE_IORESP_READY = 0, 1, 2, 3
STATE_NAMES = {0: "STATE_IOREQ_NONE", 1: "STATE_IOREQ_READY", 2: "STATE_IOREQ_INPROCESS",
               3: "STATE_IORESP_READY"}
READY, INPROCESS, RESP_READY = (STATE_NAMES[s] for s in (STATE_IOREQ_READY, STATE_IOREQ_INPROCESS,
                                                         STATE_IORESP_READY))

#: Where the lab's firmware puts the BARs (hvmloader assigns I/O BARs from 0xC000
#: and memory BARs from 0xF0000000).
PLATFORM_IO_BAR = 0xC000
NIC_IO_BAR = 0xC100
PLATFORM_MMIO_BAR = 0xF0000000
PLATFORM_SLOT, FIRST_NIC_SLOT, MAX_NICS = 3, 4, 4
NIC_MODEL = "ne2k_pci"

_VDEV_RE = re.compile(r"(xvd|hd|sd)([a-z]+)(\d*)")


def ioreq_event(host, v, state: str, port: int, size: int, direction: str, value: int | None, **extra: Any) -> None:
    """An ``ioreq`` trace event; ``value`` is left out while it is not known (a read not yet answered)."""
    if value is None:
        host.emit(v, "ioreq", port=port, size=size, dir=direction, state=state, **extra)
    else:
        host.emit(v, "ioreq", port=port, size=size, dir=direction, value=value, state=state, **extra)


def pci_irq(slot: int, pin: int = 1) -> int:
    """The ISA IRQ hvmloader routed a device's interrupt link to: its link is (pin - 1 + slot) & 3."""
    return hvm_irq.PCI_LINK_ROUTE[(pin - 1 + slot) & 3]


def disk_index(vdev: str) -> tuple[str, int] | None:
    """The bus and index libxl gives a vdev: ("ide", 0) for hda or xvda, ("scsi", n) for sdX."""
    m = _VDEV_RE.fullmatch(vdev)
    if m is None:
        m2 = re.fullmatch(r"d(\d+)(?:p\d+)?", vdev)
        return ("ide", int(m2.group(1))) if m2 else None
    n = 0
    for ch in m.group(2):
        n = n * 26 + (ord(ch) - ord("a") + 1)
    return ("scsi" if m.group(1) == "sd" else "ide", n - 1)


class PortDecode:
    """Which of one QEMU's devices answers each I/O port: the table QEMU's memory API keeps
    of its ioport regions, so an ioreq looks its port up in a dict instead of asking every
    device for its ranges (which reads the PCI BARs).

    A port is looked up among the devices the first time it is asked after a change, then
    remembered. What can change the answer is known, and each such change calls
    :meth:`changed`, which bumps the generation the remembered answers belong to: a PCI
    configuration write (a BAR moved, I/O decoding switched in the command register), the
    platform device's unplug (disks and NICs gone) and a restored snapshot. The devices
    themselves are fixed when QEMU starts. The table is not machine state: a snapshot saves
    nothing of it, and loading one starts a new generation.
    """

    #: Ports remembered at most (a guest may try every port); past it, the table starts over.
    MAX_PORTS = 1024

    def __init__(self) -> None:
        self.generation = 0
        self._built_for = 0
        self._by_port: dict[int, Any] = {}

    def changed(self) -> None:
        self.generation += 1

    def device_at(self, port: int, devices: list[Any]) -> Any | None:
        """The first of ``devices`` (QEMU's, in the order it asks them) that decodes ``port``."""
        table = self._by_port
        if self._built_for != self.generation:
            table.clear()
            self._built_for = self.generation
        elif port in table:
            return table[port]
        found = None
        for dev in devices:
            if any(lo <= port <= hi for lo, hi in dev.port_ranges()):
                found = dev
                break
        if len(table) >= self.MAX_PORTS:
            table.clear()
        table[port] = found
        return found

    def save_state(self) -> Plain:
        return Plain(None)

    def load_state(self, state: None) -> None:
        self.changed()


class Qemu:
    """One device-model instance: the emulated PC of one HVM domain."""

    def __init__(self, dm: "DeviceModel", dom) -> None:
        self.dm = dm
        self.host = dm.host
        self.dom = dom
        self.log_lines: list[str] = []        # QEMU's own log (qemu-dm-NAME.log)
        self._vcpu = None                     # the vCPU whose ioreq is being handled
        self._req: tuple[int, int, str, int | None] | None = None
        self._serial_line = ""
        conf = dom.config
        self.pci = PciHost(self)
        add_pc_chipset(self.pci)
        # xenfv's PIIX4 power-management function (QEMU's piix4_pm, 8086:7113, class 0x0680)
        self.pci.add(1, 3, PciFunction("PIIX4 ACPI", 0x8086, 0x7113, 0x0680, revision=0x03))
        self.ide = IdeController(self)
        self.serial = Uart16550(self, on_output=self._serial_out)
        self.platform: XenPlatform | None = None
        if getattr(conf, "xen_platform_pci", True):
            fn = self.pci.add(PLATFORM_SLOT, 0, PciFunction(
                "Xen Platform Device", XEN_VENDOR, XEN_PLATFORM_DEVICE, PLATFORM_CLASS, revision=PLATFORM_REVISION,
                subsystem=(XEN_VENDOR, XEN_PLATFORM_DEVICE), interrupt_pin=1,
                interrupt_line=pci_irq(PLATFORM_SLOT), command=CMD_IO | CMD_MEMORY,
                bars=(Bar(0, "io", BAR0_SIZE), Bar(1, "mem", BAR1_SIZE, prefetch=True))))
            fn.set_bar(0, PLATFORM_IO_BAR)
            fn.set_bar(1, PLATFORM_MMIO_BAR)
            self.platform = XenPlatform(self, fn, self.unplug, dm.blacklisted, self._platform_log)
        else:
            self.log("xen_platform_pci=0: no Xen platform device, so no unplug protocol")
        self.nics: list[Ne2000] = []
        self._attach_disks(getattr(conf, "disks", None) or [], getattr(conf, "filename", None))
        self._attach_nics(getattr(conf, "vifs", None) or [])
        self.acpi = AcpiPmControl(self, self._power_off)
        self.devices: list[Any] = [self.pci, self.serial, self.ide, self.acpi]
        if self.platform is not None:
            self.devices.append(self.platform)
        self.devices += self.nics
        self.decode = PortDecode()
        self.log(f"started for d{dom.domid} ({dom.name}): " + "; ".join(self.pci.enumerate()))

    # -- construction ----------------------------------------------------------------
    def _attach_disks(self, disks: Iterable[Any], cfg_file: str | None) -> None:
        for spec in disks:
            vdev = getattr(spec, "vdev", "?")
            if getattr(spec, "devtype", "disk") == "cdrom":
                self.log(f"disk {vdev}: CD-ROM drives are not emulated by the lab (PV only)")
                continue
            where = disk_index(vdev)
            if where is None or where[0] != "ide" or not 0 <= where[1] < 4:
                kind = "SCSI disks" if where and where[0] == "scsi" else "disks beyond hdd"
                self.log(f"disk {vdev}: {kind} get no emulated device in the lab (PV only)")
                continue
            index = where[1]
            if self.ide.channels[index // 2].drives[index % 2] is not None:
                self.log(f"disk {vdev}: IDE position {index} is taken; not emulated")
                continue
            image = open_disk(getattr(spec, "target", None), config_file=cfg_file, base_dir=self.dm.image_dir,
                              readonly=getattr(spec, "access", "rw") != "rw", fmt=getattr(spec, "format", "raw"),
                              shared=shared_images(self.dm.host),
                              log=lambda text, v=vdev: self.log(f"disk {v}: {text}"))
            self.ide.attach(index, IdeDrive(vdev, image, serial=index + 1))
            pos = ("primary", "secondary")[index // 2] + (" slave" if index % 2 else " master")
            self.log(f"disk {vdev}: IDE {pos}, {image.sectors} sectors, image "
                     f"{image.name}"
                     f"{' (read-only)' if image.readonly else ''}")

    def _attach_nics(self, vifs: Iterable[Any]) -> None:
        for vif in vifs:
            if not getattr(vif, "emulated", False):
                continue
            if len(self.nics) >= MAX_NICS:
                self.log(f"vif {getattr(vif, 'devid', '?')}: at most {MAX_NICS} emulated NICs; not emulated")
                continue
            i = len(self.nics)
            slot = FIRST_NIC_SLOT + i
            model = getattr(vif, "model", None) or NIC_MODEL
            if model != NIC_MODEL:
                self.log(f"vif {vif.devid}: model {model} is not modelled; the guest gets an {NIC_MODEL} (NE2000)")
            fn = self.pci.add(slot, 0, ne2k_pci_function(pci_irq(slot), NIC_IO_BAR + NIC_BAR_SIZE * i))
            mac = vif.mac_bytes if hasattr(vif, "mac_bytes") else bytes(6)
            nic = Ne2000(self, mac, fn, label=f"{NIC_MODEL} 00:{slot:02x}.0")
            self.nics.append(nic)
            bridge = self.host.services.bridge
            if bridge is not None:                     # QEMU's tap joins the vif's bridge
                bridge.attach_nic(self.dom.domid, vif.devid, nic)
            self.log(f"vif {vif.devid}: {NIC_MODEL} at PCI 00:{slot:02x}.0, I/O {fn.bar_address(0):#x}, "
                     f"IRQ {pci_irq(slot)}, MAC {mac_text(nic.mac)}")

    # -- the DeviceContext the devices talk to ---------------------------------------
    def note(self, text: str) -> None:
        if self._req is not None and self._vcpu is not None:
            port, size, direction, value = self._req
            ioreq_event(self.host, self._vcpu, text, port, size, direction, value)
        else:
            # Not part of a guest access (a frame from the network, console input): the state alone.
            v = self.dom.vcpus[0] if self.dom.vcpus else None
            self.host.emit(v, "ioreq", state=text)

    def log(self, text: str) -> None:
        self.log_lines.append(text)

    def set_irq_level(self, line: int, level: bool) -> None:
        """An ISA device's line (the UART's IRQ 4) changed: QEMU tells Xen
        (xendevicemodel_set_isa_irq_level, XEN_DMOP_set_isa_irq_level)."""
        self._dm_op("XEN_DMOP_set_isa_irq_level", [line, int(level)],
                    lambda: hvm_irq.set_isa_irq_level(self.host, self.dom, line, int(level)))

    def set_pci_intx_level(self, function: PciFunction, level: bool) -> None:
        """A PCI function's INTx pin changed (pci_set_irq -> xen_set_irq in QEMU's xen-hvm.c):
        XEN_DMOP_set_pci_intx_level for its slot and pin; Xen routes it to a GSI and a link."""
        slot = next((s for (s, _fn), f in self.pci.functions.items() if f is function), None)
        pin = function.get(0x3D, 1)
        if slot is None or not 1 <= pin <= 4:
            return                            # no pin: the function raises nothing
        intx = pin - 1
        self._dm_op("XEN_DMOP_set_pci_intx_level", [0, 0, slot, intx, int(level)],
                    lambda: hvm_irq.set_pci_intx_level(self.host, self.dom, 0, 0, slot, intx, int(level)))

    def _dm_op(self, op: str, args: list, apply) -> None:
        """One dm_op from QEMU's dom0 process, traced as dom0's hypercall."""
        from ..xen import abi
        from ..xen.hypercall_table import dispatch_python
        host, dom = self.host, self.dom
        dom0 = host.domains.get(0)
        if dom0 is None or not dom0.vcpus:
            why = apply()
        else:
            why = dispatch_python(host, dom0.vcpus[0], abi.hypercall_nr("dm_op"), [f"d{dom.domid}", op, *args], apply)
        if why is not None:
            self.log(f"{op} refused (-EINVAL): {why}")

    def _serial_out(self, ch: str) -> None:
        # The byte joins the domain's bounded console log; the line for the trace is held
        # until its newline or until it is CONSOLE_LINE_MAX long, as Xen holds a console line.
        dom = self.dom
        dom.console_log.append(ch)
        if ch != "\n":
            self._serial_line += ch
            if len(self._serial_line) < CONSOLE_LINE_MAX:
                return
        v = dom.vcpus[0] if dom.vcpus else None
        self.host.emit(v, "console", text=self._serial_line)
        self._serial_line = ""

    def _power_off(self) -> None:
        """qemu_system_shutdown_request(): QEMU asks Xen to shut the domain down
        (xendevicemodel_shutdown, XEN_DMOP_remote_shutdown), as dom0 does through dm_op."""
        from ..xen import abi
        from ..xen.hypercall_table import dispatch_python
        host, dom = self.host, self.dom
        dom0 = host.domains.get(0)
        if dom0 is None or not dom0.vcpus:
            host.shutdown(dom, "poweroff")
            return
        dispatch_python(host, dom0.vcpus[0], abi.hypercall_nr("dm_op"),
                        [f"d{dom.domid}", "XEN_DMOP_remote_shutdown", "poweroff"],
                        lambda: host.shutdown(dom, "poweroff"))

    def _platform_log(self, line: str) -> None:
        self.log(f"xen_platform: {line}")
        self.host.log(f"d{self.dom.domid} xen-platform: PV driver log: {line}")

    # -- ports ---------------------------------------------------------------------------
    def device_at(self, port: int) -> Any | None:
        """The device that decodes ``port`` now, or None."""
        return self.decode.device_at(port, self.devices)

    def mmio_device_at(self, gpa: int) -> tuple[Any, int] | None:
        """The device whose memory BAR decodes ``gpa`` now, and the BAR's base."""
        p = self.platform
        if p is not None:
            base = p.pci.bar_address(1)
            if base is not None and base <= gpa < base + BAR1_SIZE:
                return p, base
        return None

    def io(self, port: int, size: int, direction: str, value: int = 0, dev: Any | None = None) -> int:
        """Emulate one access; the value read (all ones when nothing answers). ``dev`` is the
        device ``device_at`` gave, when it was asked already."""
        mask = (1 << (8 * size)) - 1
        if dev is None:
            dev = self.device_at(port)
            if dev is None:
                return mask
        if direction == "in":
            return dev.io_read(port, size) & mask
        dev.io_write(port, size, value & mask)
        if dev is self.pci and port >= CONFIG_DATA:
            self.decode.changed()           # a configuration write may move or switch a BAR
        return value & mask

    # -- the unplug protocol's effect ------------------------------------------------------
    def unplug(self, mask: int) -> list[str]:
        gone = []
        if mask & UNPLUG_ALL_DISKS:
            gone += [f"IDE disk {v}" for v in self.ide.detach(keep_primary_master=False)]
        elif mask & UNPLUG_AUX_IDE_DISKS:
            gone += [f"IDE disk {v}" for v in self.ide.detach(keep_primary_master=True)]
        if mask & UNPLUG_ALL_NICS:
            for nic in self.nics:
                if nic.present:
                    self.pci.remove(nic.pci)
                    gone.append(f"NIC {nic.label}")
        if mask & UNPLUG_NVME_DISKS:
            self.log("unplug: no NVMe disks are emulated")
        for what in gone:
            self.log(f"unplug: {what} removed")
        self.decode.changed()
        return gone

    # -- views -------------------------------------------------------------------------------
    @property
    def serial_log(self) -> str:
        return self.serial.text


class DeviceModel:
    """The dom0 service that runs one :class:`Qemu` per HVM domain."""

    name = "device_model"

    def __init__(self, host, image_dir: Path | None = None,
                 blacklist: Iterable[tuple[str, int]] = ()) -> None:
        self.host = host
        #: Where images of configs that came from no file (and /dev targets) go; None: the lab data directory.
        self.image_dir = image_dir
        #: (product name, build number) pairs of PV drivers to refuse (``/mh/driver-blacklist``).
        self.driver_blacklist: set[tuple[str, int]] = set(blacklist)
        self.instances: dict[int, Qemu] = {}
        self._dom0_pending = 0
        self._dom0_queued = False

    @classmethod
    def install(cls, host, **kwargs: Any) -> "DeviceModel":
        """Create the service and register it as dom0's device model."""
        dm = cls(host, **kwargs)
        host.services.add(dm)
        return dm

    # -- which domains have one ------------------------------------------------------------
    @staticmethod
    def wants(dom) -> bool:
        """HVM domains have a device model; PV and PVH domains have none."""
        return dom.type == "hvm" and not dom.privileged

    def instance(self, dom, create: bool = True) -> Qemu | None:
        q = self.instances.get(dom.domid)
        if q is not None and q.dom is dom:
            return q
        if not create or not self.wants(dom) or self.host.domains.get(dom.domid) is not dom:
            return None
        q = Qemu(self, dom)
        self.instances[dom.domid] = q
        self.host.log(f"d{dom.domid}: device model (qemu-xen in dom0) started: {len(q.ide.drives())} IDE disk(s), "
                      f"{len(q.nics)} NIC(s), platform device {'present' if q.platform else 'hidden'}")
        return q

    def blacklisted(self, product: str, build: int) -> bool:
        """Is this PV driver build blacklisted? The lab's list, then xenstore's
        ``/mh/driver-blacklist/{product}/{build}`` (if xenstored runs and the node is readable)."""
        if (product, build) in self.driver_blacklist:
            return True
        xs = self.host.services.xenstored
        if xs is None:
            return False
        try:
            xs.dom0_request("read", f"/mh/driver-blacklist/{product}/{build}")
        except Exception:            # ENOENT (the usual answer) or any other refusal: not blacklisted
            return False
        return True

    # -- what Xen calls ----------------------------------------------------------------------
    def claims(self, dom, port: int) -> bool:
        return self.port_target(dom, port) is not None

    def port_target(self, dom, port: int) -> tuple[Qemu, Any] | None:
        """The QEMU instance and its device that registered ``port`` for ``dom`` with its ioreq
        server, or None: found once per ioreq, and handed back to :meth:`port_io`."""
        if not self.wants(dom):
            return None
        q = self.instance(dom)
        if q is None:
            return None
        dev = q.device_at(port)
        return None if dev is None else (q, dev)

    def port_io(self, v, port: int, size: int, direction: str, value: int,
                target: tuple[Qemu, Any] | None = None) -> int:
        """One ioreq: Xen sends it, QEMU emulates the access, Xen gets the answer. ``target`` is
        what :meth:`port_target` found, when Xen's exit handler has asked already."""
        host = self.host
        mask = (1 << (8 * size)) - 1
        if target is None:
            q, dev = self.instance(v.domain), None
            if q is None:
                return mask
        else:
            q, dev = target
        value &= mask
        emit = host.emit
        if direction == "out":
            out_value: int | None = value
            emit(v, "ioreq", port=port, size=size, dir=direction, value=value, state=READY)
            cost = host.charge(v, "ioreq_round_trip")
            emit(v, "ioreq", port=port, size=size, dir=direction, value=value, state=INPROCESS)
        else:                                   # a read's value is not known until QEMU answers
            out_value = None
            emit(v, "ioreq", port=port, size=size, dir=direction, state=READY)
            cost = host.charge(v, "ioreq_round_trip")
            emit(v, "ioreq", port=port, size=size, dir=direction, state=INPROCESS)
        q._vcpu, q._req = v, (port, size, direction, out_value)
        try:
            result = q.io(port, size, direction, value, dev)
        except Exception as e:       # a device bug must not take the host down with it
            q.log(f"internal error emulating {direction} {port:#x}: {type(e).__name__}: {e}")
            host.log(f"d{v.domain.domid} qemu-dm: internal error at port {port:#x}: {e}", v)
            result = mask
        finally:
            q._vcpu, q._req = None, None
        result &= mask
        emit(v, "ioreq", port=port, size=size, dir=direction, value=result if direction == "in" else value,
             state=RESP_READY, cost=cost)
        self._charge_dom0()
        return result

    def _charge_dom0(self) -> None:
        costs = self.host.costs
        share = costs.event.get("ioreq_dom0")
        if share is None:
            share = costs.ev("ioreq_round_trip") // 2
        self._dom0_pending += share
        if not self._dom0_queued:
            self._dom0_queued = True
            self.host.queue_dom0_work("qemu-dm: ioreqs", self._dom0_run)

    def _dom0_run(self) -> int:
        cycles, self._dom0_pending, self._dom0_queued = self._dom0_pending, 0, False
        return cycles

    def claims_mmio(self, dom, gpa: int) -> bool:
        """Has this domain's QEMU registered ``gpa`` with its ioreq server (a memory BAR it decodes)?"""
        if not self.wants(dom):
            return False
        q = self.instance(dom)
        return q is not None and q.mmio_device_at(gpa) is not None

    def mmio_io(self, v, gpa: int, size: int, direction: str, value: int) -> int | None:
        """An MMIO access Xen's emulator offers: the ioreq round trip if this QEMU registered
        the range (ioreq_server_select(), common/ioreq.c), else None and Xen answers itself.

        QEMU registers the memory BARs it emulates (its memory listener maps each section
        to its ioreq server); of the lab's devices only the Xen platform device has one.
        """
        q = self.instance(v.domain) if self.wants(v.domain) else None
        if q is None:
            return None
        found = q.mmio_device_at(gpa)
        if found is None:
            return None
        device, base = found
        host = self.host
        mask = ones(size)
        out_value = value & mask if direction == "out" else None
        extra = {"type": "IOREQ_TYPE_COPY", "addr": gpa}
        ioreq_event(host, v, READY, gpa, size, direction, out_value, **extra)
        cost = host.charge(v, "ioreq_round_trip")
        ioreq_event(host, v, INPROCESS, gpa, size, direction, out_value, **extra)
        q._vcpu, q._req = v, (gpa, size, direction, out_value)
        try:
            if direction == "in":
                result = device.mmio_read(gpa - base, size) & mask
            else:
                result = value & mask
                device.mmio_write(gpa - base, size, result)
        finally:
            q._vcpu, q._req = None, None
        host.emit(v, "mmio", addr=gpa, size=size, dir=direction, value=result, device=device.mmio_name,
                  emulator="device model")
        ioreq_event(host, v, RESP_READY, gpa, size, direction, result, cost=cost, **extra)
        self._charge_dom0()
        return result

    # -- domain life cycle -------------------------------------------------------------------
    def domain_shutdown(self, dom) -> None:
        q = self.instances.get(dom.domid)
        if q is not None and q.dom is dom and q._serial_line:
            v = dom.vcpus[0] if dom.vcpus else None
            self.host.emit(v, "console", text=q._serial_line)
            q._serial_line = ""

    def domain_gone(self, dom) -> None:
        q = self.instances.get(dom.domid)
        if q is not None and q.dom is dom:
            del self.instances[dom.domid]

    # -- for xl, the bridge and the learner ------------------------------------------------
    def serial_output(self, dom) -> str:
        q = self.instance(dom, create=False)
        return q.serial_log if q is not None else ""

    def console_input(self, dom, text: str) -> bool:
        """Type ``text`` at the guest's serial console; False if it has none."""
        q = self.instance(dom)
        if q is None:
            return False
        q.serial.feed(text.encode("latin-1", "replace"))
        return True

    def nic(self, dom, index: int = 0) -> Ne2000 | None:
        q = self.instance(dom)
        if q is None or not 0 <= index < len(q.nics):
            return None
        return q.nics[index]

    def lspci(self, dom) -> list[str]:
        q = self.instance(dom)
        return q.pci.enumerate() if q is not None else []

    def qemu_log(self, dom) -> list[str]:
        q = self.instance(dom, create=False)
        return list(q.log_lines) if q is not None else []
