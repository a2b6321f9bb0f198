"""What every attack test shares: an attacker and a victim on one host, and the checks after.

In the manner of the Xen Test Framework's XSA tests: a hostile guest (a kernel in the
lab's instruction set, or its hypercalls made as that kernel would make them) tries
something Xen refuses; the test checks the refusal is Xen's (the errno or status Xen
gives, or the attacker's domain crashed as Xen would crash it) and that nobody else was
touched: the victim's memory and its M2P entries are byte for byte what they were, dom0
is alive, Xen's page bookkeeping is consistent and the attacker maps nothing it may not.
"""

from __future__ import annotations

import struct
from pathlib import Path

from xen_helpers import (ScriptGuest, frames_digest, frames_of, hypercall, m2p_of, pv_mapping_violations, small_host, write_cfg)

GUESTS = Path(__file__).parent / "guests"
SCRIPT_GUESTS = Path(__file__).parent.parent / "data" / "guests"
DIRECT_MAP = 0xFFFF_8880_0000_0000


class Arena:
    """A host with a PV attacker, an HVM attacker and a paused PV victim (script kernels)."""

    def __init__(self, tmp_path: Path, mem_mib: int = 160) -> None:
        self.host, self.xl = host, xl = small_host(mem_mib=mem_mib)
        self.tmp = tmp_path
        self.pv = self._script(tmp_path, "pv-attacker", "pv")
        self.hvm = self._script(tmp_path, "hvm-attacker", "hvm", hap=1)
        victim = xl.create(write_cfg(tmp_path, "victim", "pv", SCRIPT_GUESTS / "pv_script.s", memory=16),
                           paused=True)
        self.victim = ScriptGuest(host, victim)
        for g in (self.pv, self.hvm, self.victim):
            self.grant_table(g)
        self._before = self._victim_state()

    def _script(self, tmp_path: Path, name: str, type_: str, **keys) -> ScriptGuest:
        kernel = SCRIPT_GUESTS / ("pv_script.s" if type_ == "pv" else "hvm_script.s")
        dom = self.xl.create(write_cfg(tmp_path, name, type_, kernel, memory=16, **keys), paused=True)
        return ScriptGuest(self.host, dom)

    def _victim_state(self):
        """The victim's memory (but its grant table, which it writes and Xen flags) and the M2P
        entries of its frames and dom0's."""
        v = self.victim.dom
        table = set(self.host.grant_tables.frames.get(v.domid, []))
        return (frames_digest(self.host, frames_of(v) - table),
                m2p_of(self.host, frames_of(v) | frames_of(self.host.domains[0])))

    def run(self, guest: ScriptGuest, limit: int = 4_000_000) -> None:
        """Install the attacker's script and let it run (its kernel makes the calls)."""
        guest.install()
        self.host.unpause(guest.dom)
        self.host.run(limit)

    def call(self, guest: ScriptGuest, name: str, *args: int) -> int:
        """One hypercall exactly as the attacker's kernel makes it (its vCPU, its pointers)."""
        return hypercall(self.host, guest.vcpu, name, *args)

    def grant_table(self, guest: ScriptGuest) -> int:
        """GNTTABOP_setup_table for the guest; the machine frame of its table."""
        gt = self.host.grant_tables
        return gt.setup_table(guest.dom.domid, 1)[1][0]

    def grant(self, guest: ScriptGuest, ref: int, to: int, frame: int, flags: int = 1) -> None:
        table = self.grant_table(guest)
        self.host.mem.write((table << 12) + 8 * ref, struct.pack("<HHI", flags, to, frame))

    def untouched(self) -> None:
        """The victim, dom0 and Xen's bookkeeping are as Xen would leave them."""
        host = self.host
        assert self._victim_state() == self._before, "the victim's memory or M2P entries changed"
        assert host.domains[0].alive, "dom0 stopped"
        assert host.mm.pv.check_invariants() == []
        for g in (self.pv,):
            if g.dom.domid in host.domains and g.dom.alive:
                assert pv_mapping_violations(host, g.dom) == []
