"""A GICv3 as one core sees it: the system-register CPU interface and the virtual CPU interface.

Physical interrupts (PPIs 16-31, SPIs from 32) are made pending by devices
and read with ICC_IAR1_EL1 (acknowledge) and ICC_EOIR1_EL1 (end of
interrupt). A hypervisor injects virtual interrupts by writing list
registers ICH_LR<n>_EL2 (vINTID in bits 31:0, priority 55:48, group 60, HW
61, state 63:62: 0 invalid, 1 pending, 2 active, 3 both); with HCR_EL2.IMO
set, EL1's ICC_* accesses reach the virtual interface instead, which reads
and updates those list registers, so the guest acknowledges and ends a
virtual interrupt without Xen being entered (DDI 0487 and the GICv3
architecture specification, IHI 0069, chapter 6). The lab gives every
interrupt priority 0xa0 (Linux's default) and models four list registers.
"""

from __future__ import annotations

SPURIOUS = 1023
DEFAULT_PRIORITY = 0xA0
LIST_REGS = 4
LR_PENDING, LR_ACTIVE = 1, 2

# The PPIs the lab wires, with the generic timer's numbers from the Arm Base System Architecture.
# (Xen takes PPI 31 for event channels: GUEST_EVTCHN_PPI, lab.xen.abi.arch_arm.)
PPI_HYP_TIMER = 26
PPI_VIRT_TIMER = 27
PPI_PHYS_TIMER = 30


def lr_value(vintid: int, state: int = LR_PENDING, priority: int = DEFAULT_PRIORITY, hw: bool = False,
             pintid: int = 0) -> int:
    """A list register's value: what Xen writes to inject ``vintid``."""
    return (state << 62) | (int(hw) << 61) | (1 << 60) | (priority << 48) | ((pintid & 0x1FFF) << 32) | vintid


def lr_fields(value: int) -> dict[str, int]:
    return {"vintid": value & 0xFFFFFFFF, "pintid": (value >> 32) & 0x1FFF, "priority": (value >> 48) & 0xFF,
            "group": (value >> 60) & 1, "hw": (value >> 61) & 1, "state": (value >> 62) & 3}


class Gic:
    def __init__(self) -> None:
        self.pending: set[int] = set()
        self.active: set[int] = set()
        self.pmr = 0                    # ICC_PMR_EL1: 0 masks everything until software opens it
        self.grpen1 = 0
        self.lr = [0] * LIST_REGS
        self.ich_hcr = 0
        self.v_pmr = 0
        self.v_grpen1 = 0

    # -- devices ----------------------------------------------------------------
    def raise_irq(self, intid: int) -> None:
        if intid not in self.active:
            self.pending.add(intid)

    def physical_pending(self) -> bool:
        return bool(self.grpen1 and self.pending and DEFAULT_PRIORITY < self.pmr)

    def virtual_pending(self) -> bool:
        if not (self.ich_hcr & 1 and self.v_grpen1):
            return False
        pmr = self.v_pmr
        for v in self.lr:
            if v >> 62 == LR_PENDING and (v >> 48) & 0xFF < pmr:
                return True
        return False

    # -- registers -----------------------------------------------------------------
    def read(self, name: str, virtual: bool) -> int:
        if name == "icc_iar1_el1":
            return self._ack_virtual() if virtual else self._ack()
        if name == "icc_pmr_el1":
            return self.v_pmr if virtual else self.pmr
        if name == "icc_igrpen1_el1":
            return self.v_grpen1 if virtual else self.grpen1
        if name == "ich_hcr_el2":
            return self.ich_hcr
        if name == "ich_vtr_el2":
            return LIST_REGS - 1
        if name == "ich_elrsr_el2":
            return sum(1 << n for n, v in enumerate(self.lr) if v >> 62 == 0)
        if name.startswith("ich_lr"):
            return self.lr[int(name[6:-4])]
        return 0

    def write(self, name: str, value: int, virtual: bool) -> None:
        if name == "icc_eoir1_el1":
            self._eoi_virtual(value & 0xFFFFFF) if virtual else self.active.discard(value & 0xFFFFFF)
        elif name == "icc_pmr_el1":
            if virtual:
                self.v_pmr = value & 0xFF
            else:
                self.pmr = value & 0xFF
        elif name == "icc_igrpen1_el1":
            if virtual:
                self.v_grpen1 = value & 1
            else:
                self.grpen1 = value & 1
        elif name == "ich_hcr_el2":
            self.ich_hcr = value & 0xFFFFFFFF
        elif name.startswith("ich_lr"):
            self.lr[int(name[6:-4])] = value

    def _ack(self) -> int:
        if not self.physical_pending():
            return SPURIOUS
        intid = min(self.pending)
        self.pending.discard(intid)
        self.active.add(intid)
        return intid

    def _ack_virtual(self) -> int:
        if not self.virtual_pending():
            return SPURIOUS
        n = min((k for k, v in enumerate(self.lr) if v >> 62 == LR_PENDING),
                key=lambda k: ((self.lr[k] >> 48) & 0xFF, self.lr[k] & 0xFFFFFFFF))
        self.lr[n] = (self.lr[n] & ~(3 << 62)) | (LR_ACTIVE << 62)
        return self.lr[n] & 0xFFFFFFFF

    def _eoi_virtual(self, vintid: int) -> None:
        for n, v in enumerate(self.lr):
            if v & 0xFFFFFFFF == vintid and (v >> 62) & LR_ACTIVE:
                if (v >> 61) & 1:                       # HW: the physical interrupt is deactivated too
                    self.active.discard((v >> 32) & 0x1FFF)
                self.lr[n] = v & ~(3 << 62)
                return

    def save_state(self) -> dict:
        return {"pending": sorted(self.pending), "active": sorted(self.active), "pmr": self.pmr,
                "grpen1": self.grpen1, "lr": list(self.lr), "ich_hcr": self.ich_hcr, "v_pmr": self.v_pmr,
                "v_grpen1": self.v_grpen1}

    def load_state(self, s: dict) -> None:
        self.pending, self.active = set(s["pending"]), set(s["active"])
        self.pmr, self.grpen1, self.lr = s["pmr"], s["grpen1"], list(s["lr"])
        self.ich_hcr, self.v_pmr, self.v_grpen1 = s["ich_hcr"], s["v_pmr"], s["v_grpen1"]
