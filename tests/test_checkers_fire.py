"""The checkers the other tests lean on, each made to fire.

Many tests end with "Xen's reference counts are consistent" (``PvMM.check_invariants()``), "the
store's tree is whole" (``XenStore.check()``) or "no domain maps what is not its own"
(``pv_mapping_violations``, ``ept_violations``). Such an assertion proves something only if the
checker can see a problem: here state is corrupted on purpose, one way at a time, as a guest with a
writable view of its own tables (or a bug in Xen) would corrupt it, and each checker must name it.
"""

from __future__ import annotations

import dataclasses

import pytest

from lab.dom0 import xsclient
from lab.dom0.xenstore import XenStore
from lab.xen import abi as A
from test_xen_mm import (D1, D2, D2_FRAME, DATA0, DATA1, L1, L2, L3, L4, L4B, PCD, PSE, RW, SPARE, TBL,
                         XEN_FRAME, P, Env, e)
from xen_helpers import (ADDR, PTE_P, PTE_PSE, PTE_RW, entry_maddr, ept_violations, pv_mapping_violations,
                         script_guest, small_host)

DIRECT_MAP = 0xFFFF_8880_0000_0000
FREE_FRAME = 0x05                          # below the frames Env hands out: nobody's


# ------------------------------------------------------------------ Xen's reference counts
def pinned_tree() -> Env:
    env = Env()
    env.tree()
    assert env.pin(L4) == (0, 1)
    env.ok()
    return env


def set_page(env: Env, mfn: int, **fields) -> None:
    pg = env.mm.pages[mfn]
    for k, v in fields.items():
        setattr(pg, k, v(getattr(pg, k)) if callable(v) else v)


CORRUPTIONS = {
    # the frame table itself
    "negative count": (lambda env: set_page(env, DATA1, count=-1), "negative count"),
    "free frame still referenced": (lambda env: set_page(env, FREE_FRAME, count=1), "free but referenced"),
    "owned frame with no reference": (lambda env: set_page(env, SPARE, count=0), "with no references"),
    "one reference too many": (lambda env: set_page(env, DATA1, count=lambda c: c + 1),
                               f"mfn {DATA1:#x}: count 3 but 2 references"),
    "one type reference too many": (lambda env: set_page(env, DATA0, type_count=lambda c: c + 1),
                                    f"mfn {DATA0:#x}: type_count 2 but 1 type references"),
    "Xen's frame given a type": (lambda env: set_page(env, XEN_FRAME, type=A.PGT_writable_page),
                                 "Xen's frame has type"),
    "pinned page that is no table": (lambda env: set_page(env, DATA1, pinned=True),
                                     "pinned but not a validated table"),
    "table in use, not validated": (lambda env: set_page(env, L3, validated=False),
                                    "table in use but not validated"),
    "linear count off": (lambda env: set_page(env, L4, linear=5), "linear count 5, expected 0"),
    "base that is no L4": (lambda env: env.mm.bases.__setitem__((D1, 0), [DATA1, None]),
                           "d1v0 base 0x15 is not a validated L4"),
    # entries written behind Xen's back
    "a table mapped writable": (lambda env: env.put(L1, 6, e(L2, P | RW)),
                                f"maps {L2:#x} writable but it is PGT_l2_page_table"),
    "another domain's frame": (lambda env: env.put(L1, 6, e(D2_FRAME, P)), f"maps {D2_FRAME:#x} owned by d2"),
    "Xen's frame": (lambda env: env.put(L1, 6, e(XEN_FRAME, P)), f"maps Xen's frame {XEN_FRAME:#x}"),
    "a memory-mapped I/O frame": (lambda env: env.put(L1, 6, e(0x7000, P)), "maps MMIO 0x7000 without I/O rights"),
    "disallowed L1 flags": (lambda env: env.put(L1, 6, e(DATA1, P | PCD)), "disallowed flags 0x10"),
    "a guest entry in Xen's L4 slots": (lambda env: env.put(L4, 0x100, e(L3, TBL)), "in Xen's range"),
    "a superpage": (lambda env: env.put(L2, 1, e(SPARE, P | PSE)), "superpage or reserved PS bit"),
    "a writable self-map": (lambda env: env.put(L4, 5, e(L4, P | RW)), "writable self-mapping"),
    "a table beyond memory": (lambda env: env.put(L3, 1, e(0x7000, P)), "points outside memory (0x7000)"),
    "another domain's table": (lambda env: env.put(L3, 1, e(D2_FRAME, P)), f"table {D2_FRAME:#x} belongs to d2"),
    "a table of the wrong level": (lambda env: env.put(L3, 1, e(L1, P)), f"points at {L1:#x} of type PGT_l1_page_table"),
    "a writable linear entry": (lambda env: env.pin(L4B) and env.put(L4, 6, e(L4B, P | RW)),
                                f"writable linear mapping of {L4B:#x}"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_check_invariants_names_each_corruption(name):
    corrupt, expected = CORRUPTIONS[name]
    env = pinned_tree()
    corrupt(env)
    problems = env.mm.check_invariants()
    assert any(expected in p for p in problems), (expected, problems)


def test_check_invariants_reports_each_problem_once_per_place():
    env = pinned_tree()
    env.put(L1, 6, e(D2_FRAME, P))
    env.put(L1, 7, e(XEN_FRAME, P))
    problems = env.mm.check_invariants()
    assert len([p for p in problems if "owned by d2" in p]) == 1
    assert len([p for p in problems if "Xen's frame" in p]) == 1
    assert problems == sorted(problems, key=problems.index), "a stable order"
    assert env.mm.check_invariants() == problems, "checking changes nothing"


def test_the_ownership_checks_follow_the_domains_asked_about():
    env = pinned_tree()
    env.put(L1, 6, e(D2_FRAME, P))
    assert any("owned by d2" in p for p in env.mm.check_invariants(domains=[D1]))
    assert not any("owned by d2" in p for p in env.mm.check_invariants(domains=[D2]))


# ------------------------------------------------------------------ the store's tree
@pytest.fixture
def store() -> XenStore:
    s = XenStore()
    xsclient.init_dom0(s)
    s.call(0, "WRITE", "/local/domain/1/device/vbd/51712/state", "1")
    assert s.check() == []
    return s


def test_store_check_finds_a_child_that_is_not_there(store):
    del store.nodes["/local/domain/1/device/vbd/51712/state"]
    assert store.check() == ["/local/domain/1/device/vbd/51712 lists missing child state"]


def test_store_check_finds_a_node_its_parent_does_not_list(store):
    parent = store.nodes["/local/domain/1/device/vbd"]
    store.nodes["/local/domain/1/device/vbd"] = dataclasses.replace(parent, children=())
    assert store.check() == ["/local/domain/1/device/vbd/51712 is not listed by its parent"]


def test_store_check_finds_a_child_listed_twice(store):
    node = store.nodes["/local/domain/1/device/vbd/51712"]
    store.nodes["/local/domain/1/device/vbd/51712"] = dataclasses.replace(node, children=("state", "state"))
    assert store.check() == ["/local/domain/1/device/vbd/51712 lists a child twice"]


def test_store_check_finds_an_orphan(store):
    store.nodes["/nowhere/orphan"] = store.nodes["/local/domain/1/device/vbd/51712/state"]
    assert store.check() == ["/nowhere/orphan is not listed by its parent"]


def test_xenstored_control_check_reports_through_the_wire(store):
    assert store.call(0, "CONTROL", None, ["check"]) == "OK"
    del store.nodes["/local/domain/1/device/vbd/51712/state"]
    rtype, payload = store.request(0, A.XS_CONTROL, b"check\0")
    assert (rtype, payload) == (A.XS_ERROR, b"EIO\0")


# ------------------------------------------------------------------ the isolation tests' walkers
@pytest.fixture(scope="module")
def guests(tmp_path_factory):
    """A PV and an HVM script guest, built and never run: the walkers must find them clean."""
    host, xl = small_host()
    d = tmp_path_factory.mktemp("guests")
    pv = script_guest(xl, d, "pv-guest", "pv", memory=16).dom
    hvm = script_guest(xl, d, "hvm-guest", "hvm", memory=16).dom
    assert pv_mapping_violations(host, pv) == [] and ept_violations(host, hvm) == []
    assert host.mm.pv.check_invariants() == []
    return host, pv, hvm


@pytest.fixture
def corrupt(guests):
    """Write a machine word for one test; the original comes back afterwards."""
    host = guests[0]
    saved: list[tuple[int, int]] = []

    def write(maddr: int, value: int) -> None:
        saved.append((maddr, host.mem.read_u64(maddr)))
        host.mem.write_u64(maddr, value)

    yield write
    for maddr, old in reversed(saved):
        host.mem.write_u64(maddr, old)
    assert pv_mapping_violations(host, guests[1]) == [] and ept_violations(host, guests[2]) == []


def pv_l1e(host, dom, pfn: int, level: int = 1) -> int:
    return entry_maddr(host, dom.vcpus[0].guest_table, DIRECT_MAP + (pfn << 12), level)


def test_the_pv_walker_sees_a_foreign_frame(guests, corrupt):
    host, pv, hvm = guests
    slot = pv_l1e(host, pv, 3)
    corrupt(slot, (hvm.p2m[3] << 12) | PTE_P)
    found = pv_mapping_violations(host, pv)
    assert any(f"maps mfn {hvm.p2m[3]:#x} of {hvm.domid!r} (ro)" in f for f in found), found
    assert any(f"owned by d{hvm.domid}" in p for p in host.mm.pv.check_invariants())


def test_the_pv_walker_sees_a_writable_page_table(guests, corrupt):
    host, pv, _hvm = guests
    l1 = (host.mem.read_u64(pv_l1e(host, pv, 3, level=2)) & ADDR) >> 12
    pfn_of_l1 = pv.p2m.index(l1)
    slot = pv_l1e(host, pv, pfn_of_l1)
    corrupt(slot, host.mem.read_u64(slot) | PTE_RW)
    found = pv_mapping_violations(host, pv)
    assert any(f"page table mfn {l1:#x} mapped writable" in f for f in found), found


def test_the_pv_walker_sees_xens_slots_and_superpages(guests, corrupt):
    host, pv, _hvm = guests
    l4 = pv.vcpus[0].guest_table
    corrupt((l4 << 12) + 8 * 260, (pv.p2m[7] << 12) | PTE_P)
    l2e = pv_l1e(host, pv, 3, level=2)
    corrupt(l2e + 8, (pv.p2m[0] << 12) | PTE_P | PTE_PSE)
    found = pv_mapping_violations(host, pv)
    assert any("slot 260" in f and "in Xen's range" in f for f in found), found
    assert any("superpage entry" in f for f in found), found


def ept_leaf(host, dom, gfn: int, level: int = 1) -> int:
    return entry_maddr(host, dom.ept_root, gfn << 12, level)


def test_the_ept_walker_sees_a_foreign_frame(guests, corrupt):
    host, pv, hvm = guests
    slot = ept_leaf(host, hvm, 3)
    corrupt(slot, (pv.p2m[3] << 12) | 0x7)
    found = ept_violations(host, hvm)
    assert found == [f"EPT maps gpa {3 << 12:#x} to mfn {pv.p2m[3]:#x}, not d{hvm.domid}'s"]


def test_the_ept_walker_sees_a_page_table_mapped_writable(guests, corrupt):
    host, _pv, hvm = guests
    mfn = hvm.p2m[3]
    pg = host.mm.pv.pages[mfn]
    pg.pinned = True                                  # as if it were a pinned PV table
    try:
        found = ept_violations(host, hvm)
    finally:
        pg.pinned = False
    assert found == [f"EPT maps gpa {3 << 12:#x} writable to mfn {mfn:#x}, a PV page table"]


def test_the_ept_walker_sees_a_table_that_is_not_xens(guests, corrupt):
    host, _pv, hvm = guests
    l2e = ept_leaf(host, hvm, 3, level=2)
    l1 = (host.mem.read_u64(l2e) & ADDR) >> 12
    host.mem.write(hvm.p2m[9] << 12, host.mem.read(l1 << 12, 4096))   # a copy of the table, in guest memory
    corrupt(l2e, (host.mem.read_u64(l2e) & ~ADDR) | (hvm.p2m[9] << 12))
    found = ept_violations(host, hvm)
    assert f"EPT table {hvm.p2m[9]:#x} is not Xen's" in found



# ------------------------------------------------------------------ the state digests
# Determinism tests compare digests: equal digests must mean equal machines, so every part of the
# state a digest claims to cover must move it.
def test_the_bare_machines_digest_moves_with_each_part_of_its_state():
    from lab.session.build import native_machine
    m = native_machine()
    m.run(50)
    seen = [m.digest()]
    assert m.digest() == seen[0], "a digest of an unchanged machine is stable"
    changes = [
        lambda: m.mem.write(0x5000, b"\x01"),                       # one byte of memory
        lambda: m.cpu.regs.__setitem__(3, m.cpu.regs[3] ^ 1),       # one bit of rbx
        lambda: setattr(m.cpu, "cr2", m.cpu.cr2 ^ 0x1000),          # a control register
        lambda: setattr(m.pic, "imr", m.pic.imr ^ 1),               # the interrupt controller
        lambda: m.console.port_out(0xE9, ord("x")),                 # console output
    ]
    for change in changes:
        change()
        seen.append(m.digest())
        assert seen[-1] != seen[-2], f"change {len(seen) - 1} left the digest as it was"


def test_the_xen_hosts_digest_moves_with_memory_and_domains(guests, corrupt):
    host, pv, _hvm = guests
    before = host.digest()
    corrupt(pv.p2m[9] << 12, host.mem.read_u64(pv.p2m[9] << 12) ^ 1)
    after_memory = host.digest()
    assert after_memory != before
    pv.pause_count += 1
    try:
        assert host.digest() != after_memory
    finally:
        pv.pause_count -= 1
    assert host.digest() == after_memory
