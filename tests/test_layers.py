"""The layers of the design, as import-linter contracts in pyproject.toml: kept now, and broken by
any import that points up a layer or brings a UI library into the core."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
from importlinter import configuration
from importlinter.application import use_cases
from importlinter.contracts.acyclic_siblings import AcyclicSiblingsContract
from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.contracts.layers import LayersContract

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
CONTRACT_TYPES = {"layers": LayersContract, "forbidden": ForbiddenContract,
                  "acyclic_siblings": AcyclicSiblingsContract}


@functools.cache
def options():
    configuration.configure()                   # import-linter's readers and contract types
    return use_cases.read_user_options(str(PYPROJECT))


def contract(kind: str, ancestor: str | None = None):
    """The one contract of that type (the one over that package, for acyclic siblings)."""
    (opts,) = [c for c in options().contracts_options
               if c["type"] == kind and (ancestor is None or c.get("ancestors") == [ancestor])]
    return CONTRACT_TYPES[kind](name=opts["name"], session_options=options().session_options,
                                contract_options=opts)


def lab_graph() -> grimp.ImportGraph:
    return grimp.build_graph("lab", include_external_packages=True)


def test_every_contract_is_kept():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(lint_imports), "--no-cache", "--config", str(PYPROJECT)], cwd=PYPROJECT.parent,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert f"Contracts: {len(options().contracts_options)} kept, 0 broken." in proc.stdout


@pytest.mark.parametrize("importer, imported", [
    ("lab.xen.grant", "lab.dom0.xenstore"),      # Xen reaching into dom0
    ("lab.hw.cpu", "lab.xen.host"),               # the hardware knowing its hypervisor
    ("lab.isa.assembler", "lab.hw.memory"),
    ("lab.trace", "lab.isa"),
    ("lab.dom0.qemu", "lab.session.session"),
    ("lab.session.commands", "lab.tui.runner"),   # the session depending on the screen
    ("lab.tui.runner", "lab.repl"),               # one front end on another
])
def test_an_import_up_the_layers_breaks_the_contract(importer, imported):
    graph = lab_graph()
    assert contract("layers").check(graph, verbose=False).kept
    graph.add_import(importer=importer, imported=imported, line_number=1, line_contents=f"import {imported}")
    assert not contract("layers").check(graph, verbose=False).kept


@pytest.mark.parametrize("importer, imported", [("lab.hw.cpu", "textual"), ("lab.session.session", "rich"),
                                                ("lab.dom0.xenstored", "prompt_toolkit")])
def test_a_ui_library_in_the_core_breaks_the_contract(importer, imported):
    graph = lab_graph()
    assert contract("forbidden").check(graph, verbose=False).kept
    graph.add_import(importer=importer, imported=imported, line_number=1, line_contents=f"import {imported}")
    assert not contract("forbidden").check(graph, verbose=False).kept


def test_every_package_of_the_lab_has_its_layer():
    """A new package (lessons, say) must be placed in the layers before its imports are checked."""
    layers = contract("layers")
    named = {tail.name for layer in layers.layers for tail in layer.module_tails}
    packages = {m for m in lab_graph().find_children("lab")}
    assert packages <= named, f"not in any layer of pyproject.toml: {sorted(packages - named)}"
    front_ends = {"lab.cli", "lab.repl", "lab.tui"}
    headless = set(dict.fromkeys(o for c in options().contracts_options if c["type"] == "forbidden"
                                 for o in c["source_modules"]))
    assert packages - front_ends <= headless, f"core packages not held headless: {sorted(packages - front_ends - headless)}"


@pytest.mark.parametrize("importer, imported", [
    ("lab.xen.events", "lab.xen.hvm"),                 # events choosing the upcall by mode itself again
    ("lab.xen.evtchn", "lab.xen.host_core"),           # event channels reaching back into the host core
    ("lab.xen.host_core", "lab.xen.host"),             # the common core knowing an architecture's host
    ("lab.xen.hypercall_table", "lab.xen.memory"),     # the leaf table reaching into common handlers
    ("lab.xen.hypercall_table", "lab.xen.grant"),      # the leaf table reaching into a subsystem
    ("lab.xen.hvm", "lab.xen.host"),                   # a subsystem reaching back into the host
    ("lab.xen.arm.p2m", "lab.xen.arm.host"),           # inside a package of lab.xen too
])
def test_an_import_cycle_inside_xen_breaks_the_contract(importer, imported):
    graph = lab_graph()
    assert contract("acyclic_siblings", "lab.xen").check(graph, verbose=False).kept
    graph.add_import(importer=importer, imported=imported, line_number=1, line_contents=f"import {imported}")
    assert not contract("acyclic_siblings", "lab.xen").check(graph, verbose=False).kept


@pytest.mark.parametrize("importer, imported", [
    ("lab.session.commands", "lab.session.live"),       # the record command opening sessions again
    ("lab.session.recorder", "lab.session.timetravel"), # the recorder reaching the replay of commands
    ("lab.session.targets", "lab.session.headless"),    # building a target knowing who runs it
    ("lab.session.session", "lab.session.commands"),    # the session knowing its command language
])
def test_an_import_cycle_inside_the_session_breaks_the_contract(importer, imported):
    graph = lab_graph()
    assert contract("acyclic_siblings", "lab.session").check(graph, verbose=False).kept
    graph.add_import(importer=importer, imported=imported, line_number=1, line_contents=f"import {imported}")
    assert not contract("acyclic_siblings", "lab.session").check(graph, verbose=False).kept
