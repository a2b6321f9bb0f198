"""Isolation under attack, in the manner of the XSA tests of the Xen Test Framework.

A guest makes hypercalls with hostile arguments; after every call Xen must not
have raised, its page-type bookkeeping must be consistent, the attacker must
map nothing of another domain or of Xen (and none of its own page tables
writable), the other domains must be untouched and still runnable, and at the
end they must finish their work with the right checksum.

The directed tests come first; then hypothesis drives random sequences of
calls from a PV guest and from an HVM guest.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.hw.boot import DIRECT_MAP
from lab.xen import abi
from lab.xen.evtchn import Port
from lab.xen.guestmem import GuestFault, copy_to_guest
from xen_helpers import (ADDR, CHECKSUM_LINE, DOMID_IO, DOMID_SELF, DOMID_XEN, EXIT_LINE, M64, PTE_A, PTE_D, PTE_G,
                         PTE_NX, PTE_P, PTE_PCD, PTE_PSE, PTE_PWT, PTE_RW, PTE_US, alive_and_runnable, entry_maddr,
                         ept_violations, frames_digest, frames_of, hypercall, last_event, m2p_of,
                         pv_mapping_violations, script_guest, small_host, write_cfg)

pytestmark = pytest.mark.machine       # every test here boots a whole machine

SHINFO_PENDING, SHINFO_MASK = 2048, 2560


# ---------------------------------------------------------------- directed tests
@pytest.fixture
def pair(tmp_path):
    """An attacking PV guest and an attacking HVM guest next to a victim PV guest, none run yet."""
    host, xl = small_host(mem_mib=192)
    pv = script_guest(xl, tmp_path, "pv-attacker", "pv", memory=16)
    hvm = script_guest(xl, tmp_path, "hvm-attacker", "hvm", memory=16)
    victim = script_guest(xl, tmp_path, "victim", "pv", memory=16)
    return host, xl, pv, hvm, victim


def others_digest(host, *doms):
    return frames_digest(host, set().union(*(frames_of(d) for d in doms)) | frames_of(host.domains[0]))


def test_evtchn_unmask_of_a_port_beyond_shared_info(pair):
    """EVTCHNOP_unmask indexed shared_info's bitmaps with any port: a write anywhere."""
    host, _, pv, hvm, victim = pair
    before = others_digest(host, victim.dom, hvm.dom)
    base = pv.dom.shared_info_mfn << 12
    shared_before = host.mem.read(base, 4096)
    for port in (4096, 4097, 1 << 15, (victim.dom.shared_info_mfn - pv.dom.shared_info_mfn) * 4096 * 8,
                 0x7FFF_FFFF, 0xFFFF_FFFF):
        copy_to_guest(host, pv.vcpu, pv.buf(), struct.pack("<I", port & 0xFFFF_FFFF))
        assert hypercall(host, pv.vcpu, "event_channel_op", 9, pv.buf()) == -22
        assert last_event(host).data["errno"] == "EINVAL"
    assert others_digest(host, victim.dom, hvm.dom) == before
    assert host.mem.read(base, 4096) == shared_before


def test_evtchn_bind_virq_to_a_vcpu_that_does_not_exist(pair):
    """A VIRQ bound to vCPU 1000 would put its pending state 64 KiB past shared_info."""
    host, _, pv, _, victim = pair
    before = others_digest(host, victim.dom)
    for virq, vcpu in ((0, 1000), (0, 0xFFFF_FFFF), (1, 1), (2, 7)):
        copy_to_guest(host, pv.vcpu, pv.buf(), struct.pack("<III", virq, vcpu, 0))
        assert hypercall(host, pv.vcpu, "event_channel_op", 1, pv.buf()) in (-2, -22)
    assert not [p for p in host.evtchn.ports[pv.dom.domid].values() if p.vcpu >= len(pv.dom.vcpus)]
    host.evtchn.send_virq(pv.dom.domid, 0, 1000)
    assert others_digest(host, victim.dom) == before


def test_evtchn_ports_run_out_at_max_event_channels(pair):
    """get_free_port(): a domU may use ports up to d->max_evtchn_port, libxl's default
    max_event_channels 1023 (libxl_create.c), then -ENOSPC; dom0 has the 2-level ABI's 4096."""
    host, _, pv, _, victim = pair
    before = others_digest(host, victim.dom)
    domid = pv.dom.domid
    table = host.evtchn.ports[domid]
    for port in range(1, 1010):                                     # most of them without the trace
        table.setdefault(port, Port("unbound", remote_dom=domid))
    copy_to_guest(host, pv.vcpu, pv.buf(), struct.pack("<HHI", DOMID_SELF, DOMID_SELF, 0))
    results = [hypercall(host, pv.vcpu, "event_channel_op", 6, pv.buf()) for _ in range(20)]
    ports = sorted(host.evtchn.ports[domid])
    assert ports == list(range(1, 1024))                            # port 0 is reserved
    assert results == [0] * 14 + [-28] * 6
    assert last_event(host).data["errno"] == "ENOSPC"
    assert host.evtchn.max_evtchn_port(0) == 4095
    assert others_digest(host, victim.dom) == before


def test_a_loopback_port_cannot_be_taken_by_another_domain(pair):
    host, _, pv, hvm, victim = pair
    copy_to_guest(host, pv.vcpu, pv.buf(), struct.pack("<HHI", DOMID_SELF, DOMID_SELF, 0))
    assert hypercall(host, pv.vcpu, "event_channel_op", 6, pv.buf()) == 0
    port = struct.unpack("<I", host.mem.read(
        (pv.dom.p2m[(pv.buf() - DIRECT_MAP) >> 12] << 12) + 4, 4))[0]
    assert host.evtchn.ports[pv.dom.domid][port].remote_dom == pv.dom.domid
    for g in (hvm, victim):
        copy_to_guest(host, g.vcpu, g.buf(), struct.pack("<HxxII", pv.dom.domid, port, 0))
        assert hypercall(host, g.vcpu, "event_channel_op", 0, g.buf()) == -22
    copy_to_guest(host, pv.vcpu, pv.buf(), struct.pack("<HxxII", DOMID_SELF, port, 0))
    assert hypercall(host, pv.vcpu, "event_channel_op", 0, pv.buf()) == 0     # the owner may loop back


def test_foreign_and_privileged_operations_are_refused(pair):
    host, _, pv, hvm, victim = pair
    vmfn = victim.dom.p2m[100]
    before = others_digest(host, victim.dom)
    l4 = pv.vcpu.guest_table
    # mmu_update on the victim's behalf, or writing the victim's page table
    copy_to_guest(host, pv.vcpu, pv.buf(), struct.pack("<QQ", (victim.vcpu.guest_table << 12) + 8, vmfn << 12 | 7))
    assert hypercall(host, pv.vcpu, "mmu_update", pv.buf(), 1, 0, victim.dom.domid) == -1
    assert hypercall(host, pv.vcpu, "mmu_update", pv.buf(), 1, 0, DOMID_SELF) < 0
    # MMU_MACHPHYS_UPDATE of the victim's frame
    m2p = m2p_of(host, frames_of(victim.dom))
    copy_to_guest(host, pv.vcpu, pv.buf(), struct.pack("<QQ", (vmfn << 12) | 1, 5))
    assert hypercall(host, pv.vcpu, "mmu_update", pv.buf(), 1, 0, DOMID_SELF) < 0
    assert m2p_of(host, frames_of(victim.dom)) == m2p
    # mmuext_op against another domain, and pinning its frames
    for cmd, arg in ((3, victim.vcpu.guest_table), (0, vmfn), (5, victim.vcpu.guest_table), (16, vmfn),
                     (17, vmfn)):
        copy_to_guest(host, pv.vcpu, pv.buf(), struct.pack("<I4xQQ", cmd, arg, vmfn))
        assert hypercall(host, pv.vcpu, "mmuext_op", pv.buf(), 1, 0, DOMID_SELF) < 0
        assert hypercall(host, pv.vcpu, "mmuext_op", pv.buf(), 1, 0, victim.dom.domid) < 0
    # an L2 superpage and an L1 entry with cache attributes (XSA-148 and friends)
    l3 = (host.mem.read_u64((l4 << 12) + 273 * 8) & ADDR) >> 12
    l2 = (host.mem.read_u64(l3 << 12) & ADDR) >> 12
    copy_to_guest(host, pv.vcpu, pv.buf(), struct.pack("<QQ", (l2 << 12) + 500 * 8, PTE_P | PTE_RW | PTE_US | PTE_PSE))
    assert hypercall(host, pv.vcpu, "mmu_update", pv.buf(), 1, 0, DOMID_SELF) == -22
    assert "Bad L2 flags 80" in host.dmesg[-1]
    # the fast path must not turn RW on for a read-only view of a page table (XSA-182)
    l1 = (host.mem.read_u64(l2 << 12) & ADDR) >> 12
    pfn = next(p for p, m in enumerate(pv.dom.p2m) if m == l1)
    entry = entry_maddr(host, l4, DIRECT_MAP + (pfn << 12))       # the L1 table's own direct-map view
    old = host.mem.read_u64(entry)
    assert old & PTE_P and not old & PTE_RW
    copy_to_guest(host, pv.vcpu, pv.buf(), struct.pack("<QQ", entry, old | PTE_RW))
    assert hypercall(host, pv.vcpu, "mmu_update", pv.buf(), 1, 0, DOMID_SELF) < 0
    assert host.mem.read_u64(entry) == old
    copy_to_guest(host, pv.vcpu, pv.buf(), struct.pack("<QQ", entry, old | PTE_A | PTE_D))
    assert hypercall(host, pv.vcpu, "mmu_update", pv.buf(), 1, 0, DOMID_SELF) == 0
    # the HVM guest: other domains' params, reservations, and PV-only memory calls
    copy_to_guest(host, hvm.vcpu, hvm.buf(), struct.pack("<H2xIQ", victim.dom.domid, 1, 0x1234))
    assert hypercall(host, hvm.vcpu, "hvm_op", 0, hvm.buf()) == -1
    copy_to_guest(host, hvm.vcpu, hvm.buf(), struct.pack("<H", victim.dom.domid))
    assert hypercall(host, hvm.vcpu, "memory_op", 3, hvm.buf()) == -1
    assert hypercall(host, hvm.vcpu, "update_va_mapping", 0, vmfn << 12 | 7, 0) == -38
    assert others_digest(host, victim.dom) == before
    assert host.mm.pv.check_invariants() == []
    assert pv_mapping_violations(host, pv.dom) == [] and ept_violations(host, hvm.dom) == []


def test_a_huge_count_ends_at_the_end_of_the_mapping(pair):
    """Entries are read one at a time (pv/mm.c, common/multicall.c): valid ones are done, and the
    first that cannot be read, past the end of the guest's mapping, ends the call with -EFAULT."""
    host, _, pv, hvm, _ = pair
    last = DIRECT_MAP + (pv.dom.mem_pages - 1) * 4096 + 4096 - 32      # two requests before unmapped memory
    own = pv.dom.p2m[pv.dom.mem_pages - 1]
    copy_to_guest(host, pv.vcpu, last, struct.pack("<QQ", (own << 12) | 1, 7) * 2)
    done = pv.buf(64)
    assert hypercall(host, pv.vcpu, "mmu_update", last, 0x7FFF_FFFF, done, DOMID_SELF) == -14
    assert pv.u64(done) == 2
    copy_to_guest(host, pv.vcpu, last - 16, struct.pack("<I4xQQ", 6, 0, 0) * 2)  # MMUEXT_TLB_FLUSH_LOCAL
    assert hypercall(host, pv.vcpu, "mmuext_op", last - 16, 0x7FFF_FFFF, done, DOMID_SELF) == -14
    assert pv.u64(done) == 2
    copy_to_guest(host, pv.vcpu, last - 16, bytes(48))              # an entry that runs off the end
    assert hypercall(host, pv.vcpu, "multicall", last - 16, 0xFFFF_FFFF) == -14
    gpa = (hvm.dom.mem_pages << 12) - 64
    copy_to_guest(host, hvm.vcpu, gpa, bytes(64))
    assert hypercall(host, hvm.vcpu, "multicall", gpa, 0xFFFF_FFFF) == -14
    assert host.mm.pv.check_invariants() == []


# ---------------------------------------------------------------- random attacks
SMALL = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 19, 20, 23, 24, 31, 63, 64, 255, 256,
         511, 512, 4095, 4096, 0x7FF0, 0x7FF1, 0x7FF2, 0x7FF4, 0x7FF5, 0xFFFF, 1 << 31, (1 << 32) - 1, 1 << 63, M64]
FLAGS = [PTE_P, PTE_P | PTE_US, PTE_P | PTE_RW, PTE_P | PTE_RW | PTE_US, PTE_P | PTE_RW | PTE_US | PTE_A | PTE_D,
         PTE_P | PTE_US | PTE_NX, PTE_P | PTE_RW | PTE_PSE, PTE_P | PTE_US | PTE_G, PTE_P | PTE_PWT | PTE_PCD,
         PTE_RW | PTE_US, 0, PTE_P | PTE_RW | PTE_US | (1 << 52), 0xFFF]
#: How the hypercalls read their arguments: a role per argument register.
ROLES = {
    0: ("ptr",), 1: ("ptr", "count", "ptr", "domid"), 2: ("ptr", "small"), 3: ("small", "va"),
    4: ("va", "va", "va"), 5: ("small",), 7: ("ptr",), 10: ("ptr", "pte"), 12: ("cmd", "ptr"),
    13: ("ptr", "count"), 14: ("va", "pte", "small"), 15: ("any",), 17: ("cmd", "ptr"),
    18: ("cmd", "count", "ptr"), 20: ("cmd", "ptr", "count"), 21: ("cmd", "small"),
    22: ("va", "pte", "small", "domid"), 23: (), 24: ("cmd", "cmd", "ptr"), 25: ("small", "any"),
    26: ("ptr", "count", "ptr", "domid"), 29: ("cmd", "ptr"), 30: ("cmd", "ptr"), 32: ("cmd", "ptr"),
    33: ("cmd", "ptr"), 34: ("cmd", "ptr"), 35: ("ptr",), 36: ("ptr",), 37: ("cmd", "ptr"),
    41: ("domid", "count", "ptr"),
}
#: What the attacker calls most: the memory and event-channel paths, the privileged calls, multicall.
COMMON = [1, 1, 1, 1, 14, 14, 26, 26, 26, 32, 32, 32, 32, 13, 13, 29, 24, 30, 0, 4, 3, 12, 12, 17, 18, 34, 34, 15,
          21, 36, 36, 35, 7, 20, 20, 23, 41]


class Attack:
    """A booted host with an attacker and a victim, and the pools hostile arguments come from."""

    def __init__(self, cfgdir, attacker: str, stage: int = 1) -> None:
        self.host, self.xl = host, xl = small_host(mem_mib=80)
        pv = xl.create(cfgdir / "pv-guest.cfg")
        hvm = xl.create(cfgdir / "hvm-guest.cfg")
        self.att, self.victim = (pv, hvm) if attacker == "pv" else (hvm, pv)
        att = self.att
        # Run the attacker's kernel to a point where it could make a hypercall itself: right
        # after its stage-th one (PV: not an iret, which returns to user mode), or for HVM
        # after its stage-th VM exit, in ring 0 with paging on.
        seen = [0]

        def reached(e) -> bool:
            if e.dom != att.domid:
                return False
            if e.kind == ("hypercall" if attacker == "pv" or stage == 1 else "vmexit") and \
                    e.data.get("name") != "iret":
                seen[0] += 1
            return seen[0] >= stage
        assert host.run_until(reached, 3_000_000) is not None
        self.v = att.vcpus[0]
        last_pfn = att.mem_pages - 1
        self.buf = (DIRECT_MAP if att.is_pv or self.v.cpu.paging else 0) + (last_pfn << 12)
        pages = host.mm.pv.pages
        own = sorted(frames_of(att))
        self.pools = {
            "own_pt": [m for m in own if pages[m].type in (1, 2, 3, 4)] or own[:1],
            "own": [own[0], own[len(own) // 2], att.p2m[last_pfn], att.p2m[0x300], att.shared_info_mfn or own[1]],
            "victim": sorted(frames_of(self.victim))[::997] + ([self.victim.vcpus[0].guest_table]
                                                                 if self.victim.is_pv else []),
            "dom0": sorted(frames_of(host.domains[0]))[::1024],
            "xen": [0, 1, host.mm.m2p_l3, host.mm.m2p_frames[0], host.mm.m2p_frames[-1], self.victim.ept_root
                    or att.ept_root or 0x100, host.xen_reserved - 1],
            "beyond": [host.mem.nr_frames, host.mem.nr_frames + 1, 1 << 30, (1 << 40) - 1],
        }
        self.tables: dict[int, list[int]] = {}
        for m in own:
            if pages[m].type in (1, 2, 3, 4):
                self.tables.setdefault(pages[m].type, []).append(m)
        self.domids = [DOMID_SELF, att.domid, self.victim.domid, 0, DOMID_XEN, DOMID_IO, 0x7FF4, 0x7FF5, 99, 0xFFFF]
        self.protected = set().union(frames_of(self.victim), frames_of(host.domains[0]))
        self.protected_digest = frames_digest(host, self.protected)
        self.victim_m2p = m2p_of(host, frames_of(self.victim))

    # -- drawing hostile words ------------------------------------------------
    def mfn(self, data) -> int:
        # Mostly the attacker's own frames and tables: valid-looking requests get further.
        pool = data.draw(st.sampled_from(["own_pt", "own_pt", "own_pt", "own", "own", "victim", "dom0", "xen",
                                          "beyond"]), label="pool")
        return data.draw(st.sampled_from(self.pools[pool]), label="mfn")

    def va(self, data) -> int:
        kind = data.draw(st.sampled_from(["buf", "own", "zero", "xen", "m2p", "noncanonical", "top", "user", "any"]))
        if kind == "buf":
            return self.buf + data.draw(st.integers(0, 4095))
        if kind == "own":
            pfn = data.draw(st.integers(0, self.att.mem_pages - 1))
            return (self.buf - ((self.att.mem_pages - 1 - pfn) << 12)) | data.draw(st.sampled_from([0, 8, 0xFF8]))
        return {"zero": 0, "xen": 0xFFFF_8100_0000_0000, "m2p": 0xFFFF_8000_0000_0000,
                "noncanonical": 0x0000_8000_0000_0000, "top": 0xFFFF_FFFF_FFFF_F000, "user": 0x40_0000,
                "any": data.draw(st.integers(0, M64))}[kind]

    def ptr(self, data) -> int:
        """A pointer Xen reads or writes: into the buffer page, or somewhere that faults."""
        if data.draw(st.integers(0, 9)) < 9:
            return self.buf + data.draw(st.sampled_from([0, 0, 0, 8, 16, 64, 2048, 4032, 4088, 4095]))
        return data.draw(st.sampled_from([0, 0x1000, 0xFFFF_FFFF_FFFF_F000, 0x0000_8000_0000_0000,
                                          (self.att.mem_pages << 12) + 0x4000_0000]))

    def word(self, data, role: str) -> int:
        if role == "small":
            return data.draw(st.sampled_from(SMALL))
        if role == "cmd":                                    # a sub-op: mostly one that exists
            return data.draw(st.integers(0, 13)) if data.draw(st.integers(0, 4)) else self.word(data, "small")
        if role == "count":
            return data.draw(st.sampled_from([1, 1, 2, 3, 0, 6, (1 << 32) - 1]))
        if role == "domid":
            pick = data.draw(st.integers(0, 5))
            if pick < 2:
                return DOMID_SELF
            if pick < 4:
                return data.draw(st.sampled_from([self.victim.domid, 0]))
            return data.draw(st.sampled_from(self.domids))
        if role == "ptr":
            return self.ptr(data)
        if role == "va":
            return self.va(data)
        if role == "pte":
            return (self.mfn(data) << 12) | data.draw(st.sampled_from(FLAGS))
        if role == "entry":
            return (self.mfn(data) << 12) | (data.draw(st.sampled_from([0, 1, 255, 256, 263, 271, 272, 273, 300,
                                                                        511])) << 3) | data.draw(st.integers(0, 3))
        kind = data.draw(st.sampled_from(["small", "pte", "entry", "ptr", "va", "domid", "raw", "ports"]))
        if kind == "raw":
            return data.draw(st.integers(0, M64))
        if kind == "ports":        # {u16 dom; u16 remote} {u32 port} as event-channel structures pack them
            d1, d2 = self.word(data, "domid"), self.word(data, "domid")
            return d1 | d2 << 16 | data.draw(st.sampled_from([0, 1, 2, 3, 5, 4095, 4096, 0xFFFF_FFFF])) << 32
        return self.word(data, kind)

    def port(self, data) -> int:
        if data.draw(st.booleans()):
            return data.draw(st.integers(0, 5))
        return data.draw(st.sampled_from([63, 1024, 4095, 4096, 0x10000, 0x7FF0_7FF0, 0xFFFF_FFFF]))

    def struct_for(self, data, nr: int, cmd: int) -> bytes | None:
        """The argument structure a sub-op reads, with hostile fields; None: use plain words."""
        dom = lambda: self.word(data, "domid") & 0xFFFF                       # noqa: E731
        if nr == 32:                                         # event_channel_op
            if cmd == 6:
                return struct.pack("<HHI", dom(), dom(), 0)
            if cmd in (0, 5):
                return struct.pack("<HxxII", dom(), self.port(data), 0)
            if cmd == 1:
                return struct.pack("<III", data.draw(st.integers(0, 30)),
                                   data.draw(st.sampled_from([0, 0, 1, 31, 1000, 0xFFFF_FFFF])), 0)
            if cmd in (3, 4, 9):
                return struct.pack("<I", self.port(data))
        if nr in (7, 35, 36):                                # platform_op, sysctl, domctl: {cmd, version, domain}
            return struct.pack("<IIH6x", data.draw(st.integers(1, 6)), 0x15, dom())
        if nr == 34:                                         # hvm_op get/set_param
            return struct.pack("<H2xIQ", dom(), data.draw(st.integers(0, 40)), self.word(data, "any"))
        if nr == 12:                                         # memory_op: a domid, or a struct
            return struct.pack("<H6xQQ", dom(), self.word(data, "any"), self.word(data, "any"))
        if nr == 41:                                         # dm_op: {h, size} then struct xen_dm_op
            return struct.pack("<QQIIBB", self.buf + 16, data.draw(st.sampled_from([10, 4, 0, 1 << 63])),
                               data.draw(st.sampled_from([10, 10, 0, 0xFFFF_FFFF])), data.draw(st.sampled_from([0, 1])),
                               data.draw(st.integers(0, 255)), data.draw(st.integers(0, 255)))
        if nr == 29:                                         # sched_op: {reason}
            return struct.pack("<I", data.draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 255, 0xFFFF_FFFF])))
        if nr == 30:                                         # callback_register
            return struct.pack("<HH4xQ", data.draw(st.integers(0, 8)), data.draw(st.integers(0, 3)), self.va(data))
        if nr == 17:                                         # xen_version get_features: {idx}
            return struct.pack("<I", data.draw(st.sampled_from([0, 1, 0xFFFF_FFFF])))
        return None

    def buffer(self, data, nr: int, args: list[int]) -> bytes:
        if data.draw(st.integers(0, 3), label="structured"):
            blob = self.struct_for(data, nr, args[0])
            if blob is not None:
                return blob
        words: list[int] = []
        n = data.draw(st.integers(0, 12), label="entries")
        for _ in range(n):
            if nr == 1:                                      # {ptr, val}
                words += [self.word(data, "entry"), self.word(data, "pte")]
            elif nr == 26:                                   # {cmd, arg1, arg2}
                cmd = data.draw(st.sampled_from(list(range(0, 22)) + [0xFFFF_FFFF]))
                if data.draw(st.booleans()):
                    arg1 = self.mfn(data)
                else:
                    arg1 = self.word(data, data.draw(st.sampled_from(["va", "small"])))
                words += [cmd, arg1, self.word(data, "any")]
            elif nr == 13:                                   # {op, result, args[6]}
                op = data.draw(st.sampled_from(COMMON + [13, 23, 31, 60]))
                roles = ROLES.get(op, ("any",) * 5)
                words += [op, 0] + [self.word(data, r) for r in roles] + [0] * (6 - len(roles))
            elif nr == 0:                                    # trap_info
                words += [data.draw(st.integers(0, 255)) | data.draw(st.integers(0, 7)) << 8 | 0xE030 << 16,
                          self.word(data, data.draw(st.sampled_from(["va", "small"])))]
            else:
                words.append(self.word(data, "any"))
        return b"".join(struct.pack("<Q", w & M64) for w in words)

    # -- one call and the checks after it ---------------------------------------------
    def template(self, data) -> tuple[int, list[int], bytes]:
        """One of the known ways in (the XSA classes), with hostile details."""
        kind = data.draw(st.sampled_from(["map", "map", "linear", "xen slot", "mmuext", "evtchn", "evtchn",
                                          "privileged", "param", "reservation", "multicall"]), label="template")
        dom = lambda: self.word(data, "domid")                          # noqa: E731
        flags = lambda: data.draw(st.sampled_from(FLAGS))                # noqa: E731
        if kind in ("map", "linear", "xen slot"):
            levels = {1: "l1", 2: "l2", 3: "l3", 4: "l4"}
            level = 1 if kind == "map" else 4 if kind == "xen slot" else data.draw(st.integers(2, 4))
            tables = self.tables.get(level) or self.pools["own"]
            table = data.draw(st.sampled_from(tables), label=levels[level])
            slot = data.draw(st.integers(256, 271)) if kind == "xen slot" else data.draw(
                st.sampled_from([0, 1, 255, 272, 300, 511, data.draw(st.integers(0, 511))]))
            if kind == "linear":
                target = data.draw(st.sampled_from(sum((self.tables.get(k, []) for k in (1, 2, 3, 4)), [])
                                                   or self.pools["own"]))
            else:
                target = self.mfn(data)
            val = (target << 12) | flags()
            if kind == "map" and self.att.is_pv and data.draw(st.booleans()):
                va = DIRECT_MAP + (data.draw(st.integers(0, self.att.mem_pages - 1)) << 12)
                return 14, [va, val, data.draw(st.sampled_from([0, 1, 2, 4, 6]))], b""
            cmd = data.draw(st.sampled_from([0, 0, 0, 1, 2, 3]))
            return 1, [self.buf, 1, self.buf + 2048, dom()], struct.pack("<QQ", (table << 12) | slot << 3 | cmd, val)
        if kind == "mmuext":
            cmd = data.draw(st.sampled_from([0, 1, 2, 3, 4, 5, 15, 16, 17, 13, 8, 9, 6, 7]))
            arg1 = self.mfn(data) if cmd not in (7, 9, 13) else self.va(data)
            return 26, [self.buf, 1, self.buf + 2048, dom()], struct.pack("<I4xQQ", cmd, arg1, self.word(data, "any"))
        if kind == "evtchn":
            cmd = data.draw(st.sampled_from([0, 1, 3, 4, 5, 6, 9, 9]))
            return 32, [cmd, self.buf], self.struct_for(data, 32, cmd)
        if kind == "privileged":                             # aimed at the others
            nr = data.draw(st.sampled_from([36, 36, 35, 7]))
            target = data.draw(st.sampled_from([self.victim.domid, self.victim.domid, 0, DOMID_SELF]))
            return nr, [self.buf], struct.pack("<IIH6x", data.draw(st.integers(1, 6)), 0x15, target)
        if kind == "param":
            return 34, [data.draw(st.integers(0, 1)), self.buf], self.struct_for(data, 34, 0)
        if kind == "reservation":
            return 12, [data.draw(st.sampled_from([3, 4, 12])), self.buf], struct.pack("<H", dom() & 0xFFFF)
        entries = b""                                        # multicall of random calls
        for _ in range(data.draw(st.integers(1, 4))):
            op = data.draw(st.sampled_from(COMMON))
            roles = ROLES.get(op, ("any",) * 5)
            words = [self.word(data, r) & M64 for r in roles] + [0] * (6 - len(roles))
            entries += struct.pack("<QQ6Q", op, 0, *words)
        return 13, [self.buf, len(entries) // 64], entries

    def attack(self, data) -> None:
        host, v = self.host, self.v
        if data.draw(st.booleans(), label="template?"):
            nr, args, blob = self.template(data)
            args += [0] * (5 - len(args))
        else:
            if data.draw(st.integers(0, 9), label="common") < 8:
                nr = data.draw(st.sampled_from(COMMON), label="nr")
            else:
                nr = data.draw(st.integers(0, 70), label="nr")
            roles = ROLES.get(nr, ("any",) * 5)
            args = [self.word(data, r) for r in roles] + [self.word(data, "any") for _ in range(5 - len(roles))]
            if nr in (1, 13, 26) and args[1] == (1 << 32) - 1:
                args[0] = self.buf + 4096 - 64              # a huge count ends where the mapping ends
            blob = self.buffer(data, nr, args)
        try:
            copy_to_guest(host, v, self.buf, blob)
        except GuestFault:
            pass                                             # the attack made its buffer read-only: fine
        seq = host.trace.seq
        ret = hypercall(host, v, nr, *args)
        note = f"hypercall {nr} {[hex(a) for a in args]} -> {ret}"
        calls = [e for e in host.trace.iter_all() if e.seq >= seq and e.kind == "hypercall" and e.dom == self.att.domid]
        assert calls and calls[-1].data["nr"] == nr, note
        assert calls[-1].data["ret"] == ret or (nr == 23 and ret == 0), note
        for e in calls:
            if e.data["ret"] < 0 and e.data["errno"] is not None:
                assert e.data["errno"] in abi.ERRNO, note
        self.check(note)

    def check(self, note: str) -> None:
        host = self.host
        assert host.mm.pv.check_invariants() == [], note
        for dom in (self.att, self.victim):
            if dom.domid in host.domains:
                found = pv_mapping_violations(host, dom) if dom.is_pv else ept_violations(host, dom)
                assert found == [], (note, found)
        assert alive_and_runnable(self.victim), note
        assert host.domains[0].alive and host.domains[0].pause_count == 0, note

    def finish(self) -> None:
        host = self.host
        assert frames_digest(host, self.protected) == self.protected_digest
        assert m2p_of(host, frames_of(self.victim)) == self.victim_m2p
        # Let the attacker run on in whatever state it left itself, then destroy it.
        host.run(40_000)
        self.check("after running on")
        self.xl.destroy(self.att.name)
        assert host.mm.pv.check_invariants() == []
        assert all(host.mm.pv.pages[m].owner is None for m in frames_of(self.att))
        host.run()
        out = self.victim.console_output
        assert self.victim.shutdown_reason == "poweroff", out
        assert CHECKSUM_LINE in out and EXIT_LINE in out
        assert host.domains[0].alive


@pytest.fixture(scope="module")
def cfgdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("attack")
    write_cfg(d, "pv-guest", "pv", memory=16)
    write_cfg(d, "hvm-guest", "hvm", memory=16, hap=1)
    return d


#: Where in the attacker's life the attack starts (see Attack): early in boot, or later with the
#: kernel's own tables and its program's address space in place.
STAGES = {"pv": [1, 30, 60], "hvm": [1, 150]}
ATTACK = settings(max_examples=8, deadline=None, derandomize=True, database=None, print_blob=False,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                         HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("attacker", ["pv", "hvm"])
def test_random_hypercalls_cannot_break_isolation(cfgdir, attacker):
    @ATTACK
    @given(data=st.data())
    def attack(data):
        a = Attack(cfgdir, attacker, data.draw(st.sampled_from(STAGES[attacker]), label="stage"))
        for _ in range(data.draw(st.integers(10, 30), label="calls")):
            a.attack(data)
            if not a.att.alive:
                break
        a.finish()

    attack()
