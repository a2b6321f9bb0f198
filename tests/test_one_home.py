"""Every number has one home.

Xen's ABI lives in ``lab.xen.abi`` (one module per Xen header), the x86
architecture's numbers in ``lab.hw.x86``, word masks in ``lab.isa.bits``. A
module elsewhere that assigns one of their names again (or the short copies
the lab once kept: ``PTE_P``, ``CR0_WP``, ``MASK32``...) is a second spelling
waiting to drift, and this test names it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

LAB = Path(__file__).resolve().parents[1] / "lab"
HOMES = [LAB / "isa" / "bits.py", LAB / "hw" / "x86.py", *sorted((LAB / "xen" / "abi").glob("*.py"))]
#: Spellings the lab used to define beside the homes.
FORMER_COPIES = re.compile(r"^(PTE_[A-Z]+|CR[04]_(PE|TS|WP|PG|PSE|PAE|PGE)|MASK(32|64)|M(8|16|32|64)"
                           r"|PFEC_[A-Z]+|VECTOR_PF)$")
CANONICAL_FUNCTIONS = {"_canonical", "canonical", "is_canonical"}


def assigned_names(tree: ast.Module) -> list[tuple[str, int]]:
    """Names bound by module-level assignments, with their lines."""
    found = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Name):
                    found.append((leaf.id, node.lineno))
    return found


def home_names() -> dict[str, Path]:
    names: dict[str, Path] = {}
    for path in HOMES:
        for name, _ in assigned_names(ast.parse(path.read_text())):
            if name.startswith("__") and not name.startswith("__HYPERVISOR_"):
                continue
            names.setdefault(name, path)
    return names


def test_the_homes_do_not_define_a_name_twice():
    seen: dict[str, Path] = {}
    twice = []
    for path in HOMES:
        for name, line in assigned_names(ast.parse(path.read_text())):
            if name.startswith("__") and not name.startswith("__HYPERVISOR_"):
                continue
            if name in seen and seen[name] != path:
                twice.append(f"{path.relative_to(LAB)}:{line} {name} (also {seen[name].relative_to(LAB)})")
            seen.setdefault(name, path)
    assert not twice, "\n".join(twice)


def test_no_module_defines_a_number_of_a_home_again():
    homes = home_names()
    found = []
    for path in sorted(LAB.rglob("*.py")):
        if path in HOMES:
            continue
        tree = ast.parse(path.read_text())
        for name, line in assigned_names(tree):
            if name in homes or FORMER_COPIES.match(name):
                where = homes.get(name)
                found.append(f"{path.relative_to(LAB)}:{line} assigns {name}"
                             + (f" (its home: {where.relative_to(LAB)})" if where else ""))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name in CANONICAL_FUNCTIONS:
                found.append(f"{path.relative_to(LAB)}:{node.lineno} defines {node.name}() "
                             "(its home: hw/x86.py)")
    assert not found, "\n".join(found)


def test_the_check_sees_a_copy(tmp_path):
    """The scan itself works: a module that spells M64 again is reported."""
    tree = ast.parse("M64 = (1 << 64) - 1\nPTE_P, PTE_RW = 1, 2\n")
    names = [name for name, _ in assigned_names(tree)]
    assert names == ["M64", "PTE_P", "PTE_RW"]
    assert all(FORMER_COPIES.match(n) for n in names)
    assert "M64" in home_names() and "EINVAL" in home_names() and "_PAGE_PRESENT" in home_names()
