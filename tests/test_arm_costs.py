"""The A64 cost table: the Arm host's cores charge each instruction what machines/costs.toml's
[a64] says, and a changed table changes the time (the "what if" a learner asks)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lab.dom0.arm.toolstack import boot_arm_host
from lab.hw.costs import CostError, load_costs
from lab.xen.arm.host import ArmHostConfig
from test_arm_xen import small_guest


def cycles_for(tmp_path, body: str, costs=None) -> int:
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256, costs=costs))
    dom = small_guest(tmp_path, xl, "g", body + "    wfi\n", vectors=False)
    v = dom.vcpus[0]
    host.run(200)                               # it blocks in its wfi (HCR_EL2.TWI) after the body
    assert v.runstate == "blocked"
    return v.cpu.cycles


def test_each_a64_operation_costs_what_the_table_says(tmp_path):
    table = load_costs().a64
    assert table["default"] == 1 and table["udiv"] > table["madd"] > table["default"]
    base = cycles_for(tmp_path, "    mov x1, #7\n    mov x2, #3\n")
    divide = cycles_for(tmp_path, "    mov x1, #7\n    mov x2, #3\n    udiv x3, x1, x2\n")
    barrier = cycles_for(tmp_path, "    mov x1, #7\n    mov x2, #3\n    isb\n")
    assert divide - base == table["udiv"] and barrier - base == table["isb"]


def test_a_changed_table_changes_the_time(tmp_path):
    costs = load_costs()
    cheap = replace(costs, a64={**costs.a64, "udiv": 1})
    body = "    mov x1, #7\n    mov x2, #3\n" + "    udiv x3, x1, x2\n" * 10
    assert cycles_for(tmp_path, body) - cycles_for(tmp_path, body, cheap) == 10 * (costs.a64["udiv"] - 1)


def test_a_bad_a64_entry_is_named(tmp_path):
    bad = tmp_path / "costs.toml"
    bad.write_text("[a64]\nudiv = -3\n")
    with pytest.raises(CostError, match=r"\[a64\] udiv must be a whole number of cycles"):
        load_costs(bad)
