"""Long random sequences of hostile operations from several guests, with Xen's invariants checked
after every step over the whole machine.

Three PV attackers and one HVM attacker, each a script kernel of the lab's, make hypercalls (page
table updates, pins, base pointers, grant setup, map, unmap and copy, event channels), write their
own grant entries, and send xenstore messages to xenstored, all with arguments drawn from pools
of frames that matter: their own page tables and data, each other's, a victim's that never grants
anything, dom0's, Xen's, and frames past the end of RAM. Operations are driven directly (no
kernel boots per example) so that each costs little.

After every step, from what the step wrote to machine memory:

* no frame of another domain than the actor was written, except a frame granted to the actor
  writable (through a grant copy), Xen's own (the M2P, EPT, grant-table entries) and the rings
  dom0's services hold;
* a frame of page-table type was written only through a validated update;
* every L1 entry written maps a frame of the table's owner, or the granted frame in the slot its
  grant mapping wrote;
* dom0 and the victim are alive, the victim's memory is unchanged.

Every 250 steps, and at the end, Xen's bookkeeping is recounted over the whole machine
(``PvMM.check_invariants``: no page table writable through any mapping, every count equal to the
references that hold it, no foreign mapping but through a grant). At the end every attacker is
destroyed and every reference must balance: nothing of theirs stays allocated, nothing is held.

Each example is one seed for a deterministic generator (the hypothesis database keeps failing
seeds); ``STEPS`` operations per example.
"""

from __future__ import annotations

import random
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from attack_support import DIRECT_MAP, SCRIPT_GUESTS
from lab.dom0.xenstored import Message
from lab.xen import abi
from lab.xen.hypercall_table import Preempted, dispatch
from xen_helpers import frames_digest, frames_of, small_host, write_cfg

pytestmark = pytest.mark.machine       # every test here boots a whole machine

STEPS = 1250
EXAMPLES = 8                 # 8 x 1250 = 10,000 operations per run
FULL_CHECK_EVERY = 250
PT_TYPES = (abi.PGT_l1_page_table, abi.PGT_l2_page_table, abi.PGT_l3_page_table, abi.PGT_l4_page_table)
FLAGS = [0x1, 0x3, 0x5, 0x7, 0x67, 0x87, 0x27 | (1 << 63), 0x19, 0x6, 0]
XS_TEXT = ["0", "1", "\u0663", "\u00b2", "r1", "n\u0663", "b0", "w65536", "", "/", "/local/domain/1/x",
           "@releaseDomain", "T", "F", "a" * 300, "\x00", "99999999999999999999"]


class Machine:
    """The host, its attackers and victim, and the write tracking the invariants need."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.tmp = Path(tempfile.mkdtemp(prefix="xenlab-attack-"))
        self.host, self.xl = host, xl = small_host(mem_mib=96, dom0_memory=16)
        kernel_pv, kernel_hvm = SCRIPT_GUESTS / "pv_script.s", SCRIPT_GUESTS / "hvm_script.s"
        self.pv = [xl.create(write_cfg(self.tmp, f"a{i}", "pv", kernel_pv, memory=12), paused=True)
                   for i in range(3)]
        self.hvm = xl.create(write_cfg(self.tmp, "h", "hvm", kernel_hvm, memory=12, hap=1), paused=True)
        self.victim = xl.create(write_cfg(self.tmp, "victim", "pv", kernel_pv, memory=12), paused=True)
        self.attackers = self.pv + [self.hvm]
        gt = host.grant_tables
        for d in self.attackers + [self.victim]:
            gt.setup_table(d.domid, 1)
        self.victim_digest = frames_digest(host, frames_of(self.victim))
        pages = host.mm.pv.pages
        self.pool = {
            "own_pt": {d.domid: [m for m in sorted(frames_of(d)) if pages[m].type in PT_TYPES] for d in self.pv},
            "victim": sorted(frames_of(self.victim))[::331] + [self.victim.vcpus[0].guest_table],
            "dom0": sorted(frames_of(host.domains[0]))[::517],
            "xen": [0, host.mm.m2p_l3, host.mm.m2p_frames[0], host.xen_reserved - 1],
            "beyond": [host.mem.nr_frames, host.mem.nr_frames + 7, 1 << 30],
        }
        self.handles: dict[int, list[tuple[int, int]]] = {d.domid: [] for d in self.attackers}
        self.writes: list[int] = []
        self.validated: set[int] = set()
        self._track()

    def _track(self) -> None:
        mem, pv = self.host.mem, self.host.mm.pv
        plain_write, entry_write = mem.write, pv._write_entry
        writes, validated = self.writes, self.validated

        def write(addr: int, data: bytes) -> None:
            writes.append(addr >> 12)
            if len(data) > 4096 - (addr & 4095):
                writes.append((addr + len(data) - 1) >> 12)
            plain_write(addr, data)

        def write_entry(addr: int, value: int) -> None:
            validated.add(addr)
            entry_write(addr, value)
        mem.write = write
        pv._write_entry = write_entry

    # -- the operations ----------------------------------------------------------------------
    def frame(self, d) -> int:
        r = self.rng
        kind = r.choice(["own", "own", "own_pt", "victim", "dom0", "xen", "beyond", "other"])
        if kind == "own":
            return r.choice(d.p2m)
        if kind == "own_pt":
            return r.choice(self.pool["own_pt"].get(d.domid) or d.p2m[:1])
        if kind == "other":
            return r.choice(r.choice(self.attackers).p2m)
        return r.choice(self.pool[kind])

    def slot(self, d) -> int:
        """A page-table slot to update: mostly the actor's own tables."""
        r = self.rng
        pts = self.pool["own_pt"].get(d.domid)
        table = r.choice(pts) if pts and r.random() < 0.8 else self.frame(d)
        return (table << 12) | (r.randrange(512) << 3)

    def buf(self, d) -> int:
        pfn = d.mem_pages - 1
        return (DIRECT_MAP if d.is_pv else 0) + (pfn << 12)

    def put(self, d, data: bytes) -> int:
        """The guest writes its own argument page."""
        pfn = d.mem_pages - 1
        self.host.mem.write(d.p2m[pfn] << 12, data)
        return self.buf(d)

    def call(self, d, nr: int, *args: int) -> int:
        v = d.vcpus[0]
        ret = dispatch(self.host, v, nr, [a & (1 << 64) - 1 for a in args] + [0] * (5 - len(args)))
        while isinstance(ret, Preempted):
            ret = dispatch(self.host, v, nr, ret.args)
        return ret or 0

    def step(self) -> int:
        r = self.rng
        d = r.choice(self.attackers)
        op = r.choice(["mmu", "mmu", "mmu", "ext", "ext", "uva", "grant_entry", "grant_entry", "map", "map",
                       "unmap", "copy", "copy", "evtchn", "xs", "xs"])
        getattr(self, f"op_{op}")(d)
        return d.domid

    def op_mmu(self, d) -> None:
        r = self.rng
        reqs = b"".join(struct.pack("<QQ", self.slot(d) | r.choice([0, 0, 0, 1, 2, 3]),
                                    (self.frame(d) << 12) | r.choice(FLAGS))
                        for _ in range(r.randint(1, 3)))
        self.call(d, 1, self.put(d, reqs), len(reqs) // 16, 0,
                  r.choice([abi.DOMID_SELF, abi.DOMID_SELF, 0, abi.DOMID_IO, r.choice(self.attackers).domid,
                            (self.victim.domid + 1) << 16]))

    def op_ext(self, d) -> None:
        r = self.rng
        cmd = r.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 15, 16, 17, 99])
        self.call(d, 26, self.put(d, struct.pack("<I4xQQ", cmd, self.frame(d), r.choice([0, 1, 0x1000]))), 1, 0,
                  r.choice([abi.DOMID_SELF, abi.DOMID_SELF, self.victim.domid]))

    def op_uva(self, d) -> None:
        r = self.rng
        va = DIRECT_MAP + (r.randrange(d.mem_pages + 16) << 12)
        self.call(d, 14, r.choice([va, va, abi.HYPERVISOR_VIRT_START, 0]), (self.frame(d) << 12) | r.choice(FLAGS),
                  r.choice([0, 2]))

    def op_grant_entry(self, d) -> None:
        r = self.rng
        table = self.host.grant_tables.frames[d.domid][0]
        if r.random() < 0.8:                    # one of its own pages (PV: the mfn, HVM: the gfn)
            pfn = r.randrange(len(d.p2m))
            frame = d.p2m[pfn] if d.is_pv else pfn
            if d.is_pv and r.random() < 0.3:
                frame = r.choice(self.pool["own_pt"].get(d.domid) or [frame])
        else:
            frame = self.frame(d)
        to = r.choice([a.domid for a in self.attackers] * 3 + [0, self.victim.domid])
        self.host.mem.write((table << 12) + 8 * r.randrange(8, 16),
                            struct.pack("<HHI", r.choice([1, 1, 1, 5, 5, 0, 0x1F, 0x101]), to, frame & 0xFFFF_FFFF))

    def op_map(self, d) -> None:
        r = self.rng
        granter = r.choice(self.attackers + [self.victim])
        host_addr = r.choice([DIRECT_MAP + (r.randrange(d.mem_pages) << 12)] * 4 + [abi.HYPERVISOR_VIRT_START, 0])
        flags = r.choice([2, 2, 6, 6, 1, 5, 0, 3])
        base = self.put(d, struct.pack("<QIIH", host_addr, flags, r.randrange(7, 17), granter.domid))
        self.call(d, 20, 0, base, 1)
        raw = self.host.mem.read((d.p2m[d.mem_pages - 1] << 12) + 18, 6)
        status, handle = struct.unpack("<hI", raw)
        if status == 0:
            self.handles[d.domid].append((host_addr, handle))

    def op_unmap(self, d) -> None:
        r = self.rng
        mine = self.handles[d.domid]
        if mine and r.random() < 0.8:
            host_addr, handle = mine.pop(r.randrange(len(mine)))
            if r.random() < 0.2:
                host_addr += 4096
        else:
            host_addr, handle = DIRECT_MAP, r.randrange(4)
        self.call(d, 20, 1, self.put(d, struct.pack("<QQI", host_addr, 0, handle)), 1)

    def op_copy(self, d) -> None:
        r = self.rng

        def end():
            other = r.choice(self.attackers + [self.victim])
            x = r.random()
            if x < 0.4:
                return r.randrange(6, 18), other.domid, 1
            if x < 0.75:                           # one of its own frames, often a page table
                pts = self.pool["own_pt"].get(d.domid)
                if d.is_pv:
                    return (r.choice(pts) if pts and r.random() < 0.5 else r.choice(d.p2m)), abi.DOMID_SELF, 0
                return r.randrange(len(d.p2m)), abi.DOMID_SELF, 0
            return r.choice([self.frame(d), r.randrange(len(d.p2m))]), r.choice([abi.DOMID_SELF, other.domid]), 0
        (sv, sd, sf), (dv, dd, df) = end(), end()
        raw = struct.pack("<QHH4xQHH4xHH", sv, sd, r.choice([0, 0, 8, 4090]), dv, dd, r.choice([0, 0, 8, 4000]),
                          r.choice([8, 8, 64, 4096]), sf | (df << 1))
        self.call(d, 20, 5, self.put(d, raw), 1)

    def op_evtchn(self, d) -> None:
        r = self.rng
        cmd = r.choice([3, 4, 5, 6, 9, 1, 7, 8])
        raw = struct.pack("<HHII", r.choice([abi.DOMID_SELF, 0, self.victim.domid]), r.randrange(8),
                          r.randrange(70), r.randrange(8))
        self.call(d, 32, cmd, self.put(d, raw))

    def op_xs(self, d) -> None:
        r = self.rng
        xsd = self.host.services.xenstored
        parts = [r.choice(XS_TEXT) for _ in range(r.randint(0, 3))]
        payload = b"".join(p.encode("utf-8") + b"\0" for p in parts)
        if r.random() < 0.2:
            payload = payload[:-1] if payload else b"\xff\xfe"
        msg = Message(r.choice(list(range(0, 28)) + [abi.XS_INVALID]), r.randrange(1 << 32), r.randrange(3), payload)
        xsd._execute(d.domid, msg)
        xsd._flush()

    # -- the invariants ------------------------------------------------------------------------
    def check_step(self, actor: int) -> None:
        host = self.host
        pages = host.mm.pv.pages
        gt = host.grant_tables
        writable_grants = {m.mfn for t in gt.maptrack.values() for m in t.values() if m.writable}
        held = {f.mfn for f in host.frames.held()}
        tables = {m for frames in gt.frames.values() for m in frames}
        for mfn in set(self.writes):
            pg = pages.get(mfn)
            owner = pg.owner if pg is not None else None
            if owner in (None, actor, abi.DOMID_XEN) or mfn in tables or mfn in held or mfn in writable_grants:
                continue
            granted = self._granted_to(actor, mfn)
            assert granted, f"d{actor}'s step wrote mfn {mfn:#x} of {owner}"
        for addr in self.validated:
            mfn = addr >> 12
            pg = pages.get(mfn)
            if pg is None or pg.type != abi.PGT_l1_page_table or not pg.type_count:
                continue
            e = host.mem.read_u64(addr)
            if not e & 1:
                continue
            t = (e >> 12) & 0xFF_FFFF_FFFF
            tp = pages.get(t)
            if tp is None or t >= host.mem.nr_frames or tp.owner == abi.DOMID_IO:
                assert pg.owner == 0, f"d{pg.owner} maps MMIO {t:#x}"
                continue
            assert tp.owner == pg.owner or pg.owner == 0 or self._grant_slot(pg.owner, t, e, addr), \
                f"L1 slot {addr:#x} of d{pg.owner} maps {t:#x} of d{tp.owner}"
            assert not (e & 2 and tp.type in PT_TYPES and tp.type_count), f"{addr:#x} maps page table {t:#x} writable"
        written_pts = [m for m in set(self.writes) if m in pages and pages[m].type in PT_TYPES and pages[m].type_count]
        for mfn in written_pts:
            assert any(a >> 12 == mfn for a in self.validated), f"page table {mfn:#x} written outside validation"
        assert host.domains[0].alive and self.victim.alive
        self.writes.clear()
        self.validated.clear()

    def _grant_slot(self, domid: int, mfn: int, entry: int, addr: int) -> bool:
        """The test's own oracle (not Xen's hook): a live host mapping of ``domid`` put ``mfn`` in
        the slot at ``addr``, writable only if the mapping is."""
        for m in self.host.grant_tables.maptrack.get(domid, {}).values():
            if m.pte_maddr == addr and m.mfn == mfn and (m.writable or not entry & 2):
                return True
        return False

    def foreign_mappings(self) -> list[str]:
        """Every present entry of every attacker's validated L1 tables that maps another domain's
        frame without a live grant mapping at that very slot."""
        host = self.host
        pages = host.mm.pv.pages
        out = []
        for d in self.pv:
            for mfn in sorted(frames_of(d)):
                pg = pages.get(mfn)
                if pg is None or pg.type != abi.PGT_l1_page_table or not pg.type_count or not pg.validated:
                    continue
                for i, e in enumerate(struct.unpack("<512Q", host.mem.read(mfn << 12, 4096))):
                    if not e & 1:
                        continue
                    t = (e >> 12) & 0xFF_FFFF_FFFF
                    tp = pages.get(t)
                    if tp is not None and tp.owner not in (d.domid, None) \
                            and not self._grant_slot(d.domid, t, e, (mfn << 12) | (i << 3)):
                        out.append(f"d{d.domid} L1 {mfn:#x}[{i}] maps {t:#x} of d{tp.owner}")
        return out

    def _granted_to(self, actor: int, mfn: int) -> bool:
        gt = self.host.grant_tables
        for granter, frames in gt.frames.items():
            dom = self.host.domains.get(granter)
            if dom is None:
                continue
            for i in range(16):
                entry = gt.read_entry(granter, i)
                if entry and entry[0] & 3 == 1 and entry[1] == actor and not entry[0] & 4:
                    if gt._granted_mfn(dom, entry[2]) == mfn:
                        return True
        return False

    def check_all(self) -> None:
        host = self.host
        assert host.mm.pv.check_invariants() == []
        assert self.foreign_mappings() == []
        assert frames_digest(host, frames_of(self.victim)) == self.victim_digest

    def destroy_attackers(self) -> None:
        host = self.host
        ids = [d.domid for d in self.attackers]
        for d in self.attackers:
            self.xl.destroy(d.name)
        assert host.mm.pv.check_invariants() == []
        left = [m for m, pg in host.mm.pv.pages.items() if pg.owner in ids]
        assert left == [], f"frames of destroyed domains still allocated: {left[:8]}"
        assert not [f for f in host.frames.held() if f.owner in ids]
        assert not host.mm.orphans
        assert host.domains[0].alive and self.victim.alive


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(seed=st.integers(0, 2**32 - 1))
@example(seed=13)
def test_random_hostile_operations_keep_xens_invariants(seed):
    m = Machine(random.Random(seed))
    for i in range(1, STEPS + 1):
        actor = m.step()
        m.check_step(actor)
        if i % FULL_CHECK_EVERY == 0:
            m.check_all()
    m.check_all()
    m.destroy_attackers()
