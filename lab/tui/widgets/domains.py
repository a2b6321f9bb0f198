"""The domains pane: a tree of domains and their vCPUs; picking one focuses every pane on it."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from ..runner import VcpuInfo

STATE_COLOR = {"running": "text-success", "halted": "text-warning"}


def vcpu_label(v: VcpuInfo, colors: dict[str, str]) -> Text:
    """Tree labels are Rich text: colours come from the theme's variables."""
    mode = "root" if v.root else "non-root"
    state_color = colors.get(STATE_COLOR.get(v.state, "text-error"), "")
    name = f"cpu{v.vcpu}" if v.dom is None else f"vcpu{v.vcpu}"
    return Text.assemble(("▶ " if v.focused else "  ", f"bold {colors.get('text-accent', '')}"),
                         (name, "bold" if v.focused else ""), (f" ring {v.cpl} {mode} ", "dim"),
                         (v.state, state_color))


def domain_label(dom: Any, vcpus: list[VcpuInfo]) -> Text:
    first = vcpus[0]
    title = first.label if dom is None else f"d{dom} {first.label}"
    return Text(title, style="bold")


class DomainTree(Tree[VcpuInfo]):
    """Domains and vCPUs; enter or a click focuses the lab on the vCPU."""

    BINDINGS = [
        Binding("enter", "select_cursor", "Focus", id="domains.focus",
                tooltip="Make this vCPU the one every pane shows"),
    ]

    class FocusRequested(Message):
        def __init__(self, spec: str) -> None:
            super().__init__()
            self.spec = spec

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("host", **kwargs)
        self.show_root = False
        self.guide_depth = 2
        self._shape: tuple = ()
        self._vcpu_nodes: dict[tuple, TreeNode[VcpuInfo]] = {}
        self._dom_nodes: dict[Any, TreeNode[VcpuInfo]] = {}

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, self._relabel)

    def _relabel(self, theme: Any = None) -> None:
        """Rich labels carry colours: draw them again in the new theme's."""
        for node in self._vcpu_nodes.values():
            if node.data is not None:
                node.set_label(vcpu_label(node.data, self.app.theme_variables))

    def show(self, vcpus: tuple[VcpuInfo, ...]) -> None:
        groups: dict[Any, list[VcpuInfo]] = {}
        for v in vcpus:
            groups.setdefault(v.dom, []).append(v)
        shape = tuple((dom, tuple(v.vcpu for v in vs)) for dom, vs in groups.items())
        if shape != self._shape:
            self._rebuild(groups)
            self._shape = shape
            return
        for dom, vs in groups.items():
            for v in vs:
                node = self._vcpu_nodes[(dom, v.vcpu)]
                if node.data != v:          # relabel only what changed
                    node.data = v
                    node.set_label(vcpu_label(v, self.app.theme_variables))

    def _rebuild(self, groups: dict[Any, list[VcpuInfo]]) -> None:
        self.clear()
        self._vcpu_nodes.clear()
        self._dom_nodes.clear()
        for dom, vs in groups.items():
            dnode = self.root.add(domain_label(dom, vs), data=vs[0], expand=True)
            self._dom_nodes[dom] = dnode
            for v in vs:
                self._vcpu_nodes[(dom, v.vcpu)] = dnode.add_leaf(vcpu_label(v, self.app.theme_variables), data=v)

    def on_tree_node_selected(self, event: Tree.NodeSelected[VcpuInfo]) -> None:
        event.stop()
        data = event.node.data
        if data is not None:
            self.post_message(self.FocusRequested(data.spec))
