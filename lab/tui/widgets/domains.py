"""The domains pane: a tree of domains and their vCPUs; picking one focuses every pane on it."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from ...session.view import DomainInfo, StateView, VcpuInfo

STATE_COLOR = {"running": "text-success", "halted": "text-warning", "runnable": "text-primary",
               "blocked": "text-warning", "paused": "text-warning", "offline": "text-muted"}
DOMAIN_COLOR = {"running": "text-success", "runnable": "text-primary", "blocked": "text-warning",
                "paused": "text-warning"}
HINT = "enter focuses · F9 next domain"


def _vcpu_state(v: VcpuInfo) -> str:
    """Xen's runstate for a vCPU of a Xen guest (halted or stopped if its CPU is); the CPU's state on bare metal."""
    if not v.runstate or v.state.startswith("stopped"):
        return v.state
    if v.has_cpu and v.state == "halted" and v.runstate != "running":
        return "halted"
    return v.runstate


def vcpu_label(v: VcpuInfo, colors: dict[str, str]) -> Text:
    """Tree labels are Rich text: colours come from the theme's variables."""
    state = _vcpu_state(v)
    state_color = colors.get(STATE_COLOR.get(state, "text-error"), "")
    marker = ("▶ " if v.focused else "  ", f"bold {colors.get('text-accent', '')}")
    if v.dom is None:                       # bare metal: one CPU, no hypervisor
        mode = "root" if v.root else "non-root"
        return Text.assemble(marker, (f"cpu{v.vcpu}", "bold" if v.focused else ""),
                             (f" ring {v.cpl} {mode} ", "dim"), (state, state_color))
    # Compact, so that a vCPU fits on one line of the pane at its narrowest (about 40 columns).
    pcpu = f"pCPU{v.pcpu}" if v.pcpu is not None else "pCPU-"
    parts: list[Any] = [marker, (f"vcpu{v.vcpu}", "bold" if v.focused else ""), (f" {pcpu} ", "dim"),
                        (state, state_color)]
    if not v.has_cpu:
        parts.append((" · dom0 services" if v.role == "services" else " · not started", "dim"))
    elif v.mode == "arm":
        parts.append((f" · EL{v.cpl}", "dim"))            # exception levels: no rings, no root mode
    else:
        mode = "root" if v.root else "non-root"
        parts.append((f" · ring {v.cpl} {mode}", "dim"))
        if v.mode in ("pv", "pv32") and v.role:
            # A PV kernel's ring does not say whose code runs (64-bit: ring 3 for both).
            parts.append((f" {v.role}", "dim" if not v.focused else ""))
    return Text.assemble(*parts)


def domain_label(d: DomainInfo, colors: dict[str, str]) -> Text:
    state = d.state if not d.reason else f"{d.state} ({d.reason})"
    color = colors.get(DOMAIN_COLOR.get(d.state, "text-error"), "")
    return Text.assemble((f"d{d.domid} ", "bold"), (d.name, "bold"), (f"  {d.mode} · ", "dim"), (state, color),
                         (f" · {d.mem_mib} MiB", "dim"))


def bare_label(vcpus: list[VcpuInfo]) -> Text:
    return Text(vcpus[0].label, style="bold")


def _relabel(node: TreeNode[VcpuInfo], label: Text) -> None:
    shown = node.label
    if not (isinstance(shown, Text) and shown.plain == label.plain and shown.spans == label.spans
            and shown.style == label.style):
        node.set_label(label)


class DomainTree(Tree[VcpuInfo]):
    """Domains and vCPUs; enter or a click focuses the lab on the vCPU (or domain)."""

    BINDINGS = [
        # Not in the Footer (the pane's subtitle says it): a key the Footer shows
        # only while the tree has the focus would rebuild the Footer on every
        # move into and out of this pane.
        Binding("enter", "select_cursor", "Focus", show=False, id="domains.focus",
                tooltip="Make this vCPU (or this domain) the one every pane shows"),
    ]

    class FocusRequested(Message):
        def __init__(self, spec: str) -> None:
            super().__init__()
            self.spec = spec

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("host", **kwargs)
        self.show_root = False
        self.guide_depth = 2
        self.auto_expand = False          # enter on a domain focuses it; space folds it
        self._shape: tuple = ()
        self._vcpu_nodes: dict[tuple, TreeNode[VcpuInfo]] = {}
        self._dom_nodes: dict[Any, TreeNode[VcpuInfo]] = {}
        self._dom_infos: dict[Any, DomainInfo] = {}
        self._laid_size = Size(0, 0)

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, self._relabel)

    def notify_style_update(self) -> None:
        # Tree's own version asks for a layout of the whole screen, and it runs
        # whenever the tree gains or loses the focus (its :focus colours). A
        # style that changes the tree's size lays it out by itself, so a repaint
        # is enough here.
        Widget.notify_style_update(self)
        self._clear_line_cache()
        self._updates += 1
        self.root._reset()
        self.refresh()

    def _on_resize(self, event: events.Resize) -> None:
        # A tab showing the pane again sends a Resize at the size the tree had, and Tree's own
        # handler then lays the whole screen out once more, in a frame of its own.
        if event.size == self._laid_size:
            event.prevent_default()
            return
        self._laid_size = event.size

    def _relabel(self, theme: Any = None) -> None:
        """Rich labels carry colours: draw them again in the new theme's."""
        colors = self.app.theme_variables
        for node in self._vcpu_nodes.values():
            if node.data is not None:
                node.set_label(vcpu_label(node.data, colors))
        for dom, node in self._dom_nodes.items():
            info = self._dom_infos.get(dom)
            if info is not None:
                node.set_label(domain_label(info, colors))

    def show(self, view: StateView | tuple[VcpuInfo, ...]) -> None:
        """Show a view's domains (a Xen host) or its CPUs (bare metal)."""
        if isinstance(view, tuple):
            domains: tuple[DomainInfo, ...] = ()
            vcpus = view
        else:
            domains, vcpus = view.domains, view.vcpus
        groups: dict[Any, list[VcpuInfo]] = {}
        if domains:
            for d in domains:
                groups[d.domid] = list(d.vcpus)
        else:
            for v in vcpus:
                groups.setdefault(v.dom, []).append(v)
        infos = {d.domid: d for d in domains}
        shape = tuple((dom, tuple(v.vcpu for v in vs)) for dom, vs in groups.items())
        if shape != self._shape:
            self._dom_infos = infos
            self._rebuild(groups)
            self._shape = shape
            return
        colors = self.app.theme_variables
        # Relabel only what reads differently: the infos change with every state (a vCPU's
        # running time), and a new label redraws the node's line and every line under it.
        for dom, info in infos.items():
            node = self._dom_nodes[dom]
            if self._dom_infos.get(dom) != info:
                _relabel(node, domain_label(info, colors))
                node.data = info.vcpus[0] if info.vcpus else None
        self._dom_infos = infos
        for dom, vs in groups.items():
            for v in vs:
                node = self._vcpu_nodes[(dom, v.vcpu)]
                if node.data != v:
                    node.data = v
                    _relabel(node, vcpu_label(v, colors))

    def _rebuild(self, groups: dict[Any, list[VcpuInfo]]) -> None:
        self.clear()
        self._vcpu_nodes.clear()
        self._dom_nodes.clear()
        colors = self.app.theme_variables
        for dom, vs in groups.items():
            info = self._dom_infos.get(dom)
            label = domain_label(info, colors) if info is not None else bare_label(vs)
            dnode = self.root.add(label, data=vs[0] if vs else None, expand=True)
            self._dom_nodes[dom] = dnode
            for v in vs:
                self._vcpu_nodes[(dom, v.vcpu)] = dnode.add_leaf(vcpu_label(v, colors), data=v)

    def node_for(self, dom: Any, vcpu: int | None = None) -> TreeNode[VcpuInfo] | None:
        """The tree node of a domain (or of one of its vCPUs)."""
        if vcpu is None:
            return self._dom_nodes.get(dom)
        return self._vcpu_nodes.get((dom, vcpu))

    def on_tree_node_selected(self, event: Tree.NodeSelected[VcpuInfo]) -> None:
        event.stop()
        data = event.node.data
        if data is not None:
            self.post_message(self.FocusRequested(data.spec))
