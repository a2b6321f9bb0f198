"""The device tree the toolstack hands an Arm guest (``tools/libs/light/libxl_arm.c``).

A guest finds Xen through the top-level ``hypervisor`` node: ``compatible``
names the Xen ABI version, ``reg`` region 0 is where to map the grant table, and
``interrupts`` is the event-channel PPI (``docs/misc/arm/device-tree/guest.txt``).
Beside it are the memory bank, the GICv3, the generic timer and ``chosen``.
The tree is built as data, flattened to the real FDT format (version 17, the
blob ``dtc`` writes and a kernel parses) and printed as DTS for a learner.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from . import layout as L
from .psci import PSCI_COMPATIBLE, PSCI_cpu_off, PSCI_cpu_on, vcpuid_to_vaffinity

FDT_MAGIC = 0xD00DFEED
FDT_BEGIN_NODE, FDT_END_NODE, FDT_PROP, FDT_NOP, FDT_END = 1, 2, 3, 4, 9
#: Interrupt specifier cells (bindings/interrupt-controller/arm,gic.txt): type 1 is a PPI,
#: the number is the PPI minus 16, flags are the CPU mask << 8 | trigger; 8 is level-low.
GIC_PPI = 1
DT_IRQ_TYPE_LEVEL_LOW = 8


@dataclass
class Node:
    name: str
    props: list[tuple[str, bytes | str | list[int] | list[str]]] = field(default_factory=list)
    children: list["Node"] = field(default_factory=list)

    def prop(self, name: str):
        return next((v for n, v in self.props if n == name), None)

    def child(self, name: str) -> "Node | None":
        return next((c for c in self.children if c.name == name), None)


def _cells(*values: int) -> list[int]:
    return list(values)


def _ppi(ppi: int) -> list[int]:
    return [GIC_PPI, ppi - 16, (0xF << 8) | DT_IRQ_TYPE_LEVEL_LOW]


def guest_tree(*, xen_version: tuple[int, int], ram_base: int, ram_size: int, bootargs: str = "",
               nr_cpus: int = 1) -> Node:
    """The tree libxl builds for a guest (make_root_properties, make_chosen_node, make_cpus_node,
    make_psci_node, make_memory_nodes, make_gicv3_node, make_timer_node, make_hypervisor_node), as
    far as the lab's guests need it."""
    major, minor = xen_version
    root = Node("", [("compatible", ["xen,xenvm-%d.%d" % (major, minor), "xen,xenvm"]),
                     ("interrupt-parent", _cells(0xFDE8)), ("#address-cells", _cells(2)), ("#size-cells", _cells(2))])
    root.children.append(Node("chosen", [("bootargs", bootargs)]))
    cpus = Node("cpus", [("#address-cells", _cells(1)), ("#size-cells", _cells(0))])
    for i in range(nr_cpus):
        mpidr = vcpuid_to_vaffinity(i)
        cpus.children.append(Node(f"cpu@{mpidr:x}", [("device_type", "cpu"), ("compatible", ["arm,armv8"]),
                                                     ("enable-method", "psci"), ("reg", _cells(mpidr))]))
    root.children.append(cpus)
    root.children.append(Node("psci", [("compatible", list(PSCI_COMPATIBLE)), ("method", "hvc"),
                                       ("cpu_off", _cells(PSCI_cpu_off)), ("cpu_on", _cells(PSCI_cpu_on))]))
    root.children.append(Node(f"memory@{ram_base:x}", [("device_type", "memory"),
                                                       ("reg", _cells(ram_base >> 32, ram_base & 0xFFFFFFFF,
                                                                      ram_size >> 32, ram_size & 0xFFFFFFFF))]))
    root.children.append(Node(f"interrupt-controller@{L.GUEST_GICV3_GICD_BASE:x}", [
        ("compatible", ["arm,gic-v3"]), ("#interrupt-cells", _cells(3)), ("#address-cells", _cells(2)),
        ("interrupt-controller", b""),
        ("reg", _cells(0, L.GUEST_GICV3_GICD_BASE, 0, L.GUEST_GICV3_GICD_SIZE,
                       0, L.GUEST_GICV3_GICR0_BASE, 0, L.GUEST_GICV3_GICR0_SIZE)),
        ("phandle", _cells(0xFDE8))]))
    root.children.append(Node("timer", [
        ("compatible", ["arm,armv8-timer", "arm,armv7-timer"]),
        ("interrupts", _ppi(L.GUEST_TIMER_PHYS_S_PPI) + _ppi(L.GUEST_TIMER_PHYS_NS_PPI)
         + _ppi(L.GUEST_TIMER_VIRT_PPI))]))
    root.children.append(Node("hypervisor", [
        ("compatible", ["xen,xen-%d.%d" % (major, minor), "xen,xen"]),
        ("reg", _cells(0, L.GUEST_GNTTAB_BASE, 0, L.GUEST_GNTTAB_SIZE)),
        ("interrupts", _ppi(L.GUEST_EVTCHN_PPI))]))
    return root


def _value(v) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode() + b"\0"
    if v and isinstance(v[0], str):
        return b"".join(s.encode() + b"\0" for s in v)
    return b"".join(struct.pack(">I", c & 0xFFFFFFFF) for c in v)


def flatten(root: Node) -> bytes:
    """The FDT blob (devicetree specification v0.4, chapter 5): header, reserve map, struct, strings."""
    strings = bytearray()
    offsets: dict[str, int] = {}
    body = bytearray()

    def name_off(name: str) -> int:
        if name not in offsets:
            offsets[name] = len(strings)
            strings.extend(name.encode() + b"\0")
        return offsets[name]

    def pad() -> None:
        while len(body) % 4:
            body.append(0)

    def emit(node: Node) -> None:
        body.extend(struct.pack(">I", FDT_BEGIN_NODE))
        body.extend(node.name.encode() + b"\0")
        pad()
        for name, v in node.props:
            data = _value(v)
            body.extend(struct.pack(">III", FDT_PROP, len(data), name_off(name)))
            body.extend(data)
            pad()
        for c in node.children:
            emit(c)
        body.extend(struct.pack(">I", FDT_END_NODE))

    emit(root)
    body.extend(struct.pack(">I", FDT_END))
    header_size = 40
    rsvmap = bytes(16)                          # one terminating (0, 0) entry
    off_rsv = header_size
    off_struct = off_rsv + len(rsvmap)
    off_strings = off_struct + len(body)
    total = off_strings + len(strings)
    header = struct.pack(">IIIIIIIIII", FDT_MAGIC, total, off_struct, off_strings, off_rsv, 17, 16, 0,
                         len(strings), len(body))
    return header + rsvmap + bytes(body) + bytes(strings)


def parse(blob: bytes) -> Node:
    """The tree back from a blob (for tests and for showing what a guest was given)."""
    magic, total, off_struct, off_strings = struct.unpack_from(">IIII", blob, 0)
    if magic != FDT_MAGIC or total > len(blob):
        raise ValueError("not a flattened device tree")
    pos = off_struct
    stack: list[Node] = []
    root: Node | None = None
    while True:
        (tok,) = struct.unpack_from(">I", blob, pos)
        pos += 4
        if tok == FDT_BEGIN_NODE:
            end = blob.index(b"\0", pos)
            node = Node(blob[pos:end].decode())
            pos = (end + 4) & ~3
            if stack:
                stack[-1].children.append(node)
            else:
                root = node
            stack.append(node)
        elif tok == FDT_PROP:
            length, noff = struct.unpack_from(">II", blob, pos)
            name = blob[off_strings + noff:blob.index(b"\0", off_strings + noff)].decode()
            stack[-1].props.append((name, blob[pos + 8:pos + 8 + length]))
            pos = (pos + 8 + length + 3) & ~3
        elif tok == FDT_END_NODE:
            stack.pop()
        elif tok == FDT_NOP:
            continue
        elif tok == FDT_END:
            break
        else:
            raise ValueError(f"bad FDT token {tok:#x} at {pos - 4:#x}")
    assert root is not None
    return root


def to_dts(node: Node, indent: str = "") -> str:
    """The tree as ``dtc -I dtb -O dts`` would print it (cells in hex, strings quoted)."""
    lines = [f"{indent}{node.name or '/'} {{"]
    for name, v in node.props:
        if isinstance(v, bytes) and not v:
            lines.append(f"{indent}\t{name};")
        elif isinstance(v, str):
            lines.append(f'{indent}\t{name} = "{v}";')
        elif isinstance(v, list) and v and isinstance(v[0], str):
            lines.append(f"{indent}\t{name} = " + ", ".join(f'"{s}"' for s in v) + ";")
        elif isinstance(v, list):
            lines.append(f"{indent}\t{name} = <" + " ".join(f"{c:#x}" for c in v) + ">;")
        else:
            lines.append(f"{indent}\t{name} = [{v.hex(' ')}];")
    for c in node.children:
        lines.append(to_dts(c, indent + "\t"))
    lines.append(f"{indent}}};")
    return "\n".join(lines)
