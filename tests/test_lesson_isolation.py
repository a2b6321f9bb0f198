"""The isolation lesson's hostile kernel: every attack gets Xen's answer, and the victim is untouched."""

from __future__ import annotations

import struct

import pytest

from lab.isa.assembler import assemble_file
from lab.paths import MACHINES
from lab.xen import abi
from xen_helpers import frames_digest, frames_of, m2p_of, pv_mapping_violations, small_host, write_cfg

pytestmark = pytest.mark.machine

HOSTILE = MACHINES / "kernels" / "hostile_pv.s"
GRANTER = MACHINES / "kernels" / "granter_pv.s"
DIRECT_MAP = 0xFFFF_8880_0000_0000
GTF_permit_access = 1           # public/grant_table.h
#: What Xen answers each attack with, in the kernel's order (machines/kernels/hostile_pv.s).
EXPECTED = {
    "#PF error code of the direct write to its L4 (present | write | user)": 7,
    "mmu_update: a writable mapping of its own L4": -abi.ERRNO["EBUSY"],
    "mmu_update: a frame of the domain built before it": -abi.ERRNO["EBUSY"],
    "map_grant_ref of the victim's grant 8": abi.GNTST_general_error,
    "bind_interdomain to the victim's port 1": -abi.ERRNO["EINVAL"],
    "domctl destroydomain of the victim": -abi.ERRNO["EPERM"],
    "map_grant_ref of the granter's grant 8, while granted": abi.GNTST_okay,
    "map_grant_ref of the granter's grant 8, after it revoked it": abi.GNTST_general_error,
}


def _read_u64(host, dom, va: int) -> int:
    return host.mem.read_u64((dom.p2m[(va - DIRECT_MAP) >> 12] << 12) + (va & 0xFFF))


def _signed(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("isolation")
    host, xl = small_host()
    victim = xl.create(write_cfg(tmp, "victim", "pv", MACHINES / "kernels" / "pv.s", memory=16), paused=True)
    # The victim grants its page 0x100 to Domain-0 as grant 8, as a frontend grants its ring.
    table = host.grant_tables.setup_table(victim.domid, 1)[1][0]
    host.mem.write((table << 12) + 8 * 8, struct.pack("<HHI", GTF_permit_access, 0, victim.p2m[0x100]))
    victim_frames = frames_of(victim) - {table}
    before = (frames_digest(host, victim_frames), m2p_of(host, victim_frames | frames_of(host.domains[0])))
    hostile = xl.create(write_cfg(tmp, "hostile", "pv", HOSTILE, memory=16))
    granter = xl.create(write_cfg(tmp, "granter", "pv", GRANTER, memory=16))
    assert (victim.domid, hostile.domid, granter.domid) == (1, 2, 3), "the ids the kernels name"
    symbols = assemble_file(HOSTILE).symbols
    done = symbols["attacks_done"]
    for _ in range(40):
        if _read_u64(host, hostile, done):
            break
        host.run(100_000)
    after = (frames_digest(host, victim_frames), m2p_of(host, victim_frames | frames_of(host.domains[0])))
    results = [_signed(_read_u64(host, hostile, symbols["results"] + 8 * i)) for i in range(len(EXPECTED))]
    return host, victim, hostile, symbols, before, after, results, granter


def test_every_attack_gets_xens_answer(attacked):
    host, victim, hostile, symbols, before, after, results, granter = attacked
    assert _read_u64(host, hostile, symbols["attacks_done"]) == 1
    assert dict(zip(EXPECTED, results)) == EXPECTED
    # the frame it tried to map really was the victim's
    target = _read_u64(host, hostile, symbols["target_mfn"])
    assert target in frames_of(victim) and target not in frames_of(hostile)


def test_the_victim_and_xen_are_untouched_and_the_attacker_lives(attacked):
    host, victim, hostile, symbols, before, after, results, granter = attacked
    assert after == before, "the victim's memory or its M2P entries changed"
    assert hostile.alive and hostile.crash_reason is None
    assert host.domains[0].alive and victim.domid in host.domains
    assert host.mm.pv.check_invariants() == []
    assert pv_mapping_violations(host, hostile) == []


def test_the_refusals_are_in_the_trace_with_xens_reasons(attacked):
    host, victim, hostile, symbols, before, after, results, granter = attacked
    evs = [e for e in host.trace.iter_all() if e.dom == hostile.domid]
    pt = [e.data["message"] for e in evs if e.kind == "pagetable" and e.data.get("result") == "EBUSY"]
    assert len(pt) == 2
    assert pt[0].startswith("Bad type")
    assert pt[1] == f"pg_owner d{hostile.domid} l1e_owner d{hostile.domid}, but real_pg_owner d{victim.domid}"
    traps = [e for e in evs if e.kind == "trap"]
    assert [(t.data["mnemonic"], t.data["error_code"]) for t in traps] == [("#PF", 7)]
    grants = [(e.data["op"], e.data["granter"], e.data["status"]) for e in evs if e.kind == "grant"]
    assert grants == [("map_grant_ref", victim.domid, "GNTST_general_error"),
                      ("map_grant_ref", granter.domid, "GNTST_okay"),
                      ("unmap_grant_ref", granter.domid, "GNTST_okay"),
                      ("map_grant_ref", granter.domid, "GNTST_general_error")]
    calls = [(e.data["name"], e.data["errno"]) for e in evs if e.kind == "hypercall" and e.data["errno"]]
    assert calls == [("mmu_update", "EBUSY"), ("mmu_update", "EBUSY"), ("event_channel_op", "EINVAL"),
                     ("domctl", "EPERM")]


def test_a_revoked_grant_cannot_be_mapped_and_a_mapped_one_cannot_be_revoked(attacked):
    """common/grant_table.c: map_grant_ref() reads the entry at every map, so once the granter
    clears it the map is GNTST_general_error (_set_status_v1: the entry lacks GTF_permit_access);
    while it was mapped Xen kept GTF_reading set, and the granter waited for it to clear
    (gnttab_end_foreign_access) before revoking."""
    host, victim, hostile, symbols, before, after, results, granter = attacked
    g_symbols = assemble_file(GRANTER).symbols
    assert _read_u64(host, granter, g_symbols["granted"]) == 1
    assert _read_u64(host, granter, g_symbols["revoked"]) == 1
    gt = host.grant_tables
    flags, domid, frame = gt.read_entry(granter.domid, 8)
    assert flags == 0, "revoked: no GTF_permit_access, and nobody reading or writing"
    assert (granter.domid, 8) not in gt.active and gt.maptrack.get(hostile.domid, {}) == {}
    assert any("Bad flags (0) or dom (" in line and f"expected d{hostile.domid}" in line for line in host.dmesg)
    assert pv_mapping_violations(host, hostile) == [] and granter.alive
