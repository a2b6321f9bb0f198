"""HVMOP_set_param / HVMOP_get_param from a hostile HVM guest (xen/arch/x86/hvm/hvm.c).

hvm_allow_set_param() lets a guest set only the params that are its own business; the
ioreq pages, the xenstore and console frames, the identity map, the S-state and the rest are
the toolstack's and the device model's (-EPERM to the domain itself), deprecated indexes are
-EINVAL, altp2m read-only (-EEXIST), the set-once params -EEXIST on a second value.
hvm_allow_get_param() hides the same params from reading. Another domain's params are
XSM_TARGET's (-EPERM). A VM86 TSS that cannot fit crashes the guest that set it.
"""

from __future__ import annotations

import struct

import pytest

from attack_support import Arena
from lab.xen import abi
from lab.xen import hvm_params
from lab.xen.hvm_params import DEPRECATED, GUEST_SETTABLE

HVM_NR_PARAMS = abi.HVM_NR_PARAMS

pytestmark = pytest.mark.machine       # every test here boots a whole machine

EPERM, EINVAL, EEXIST, ESRCH = (-abi.ERRNO[n] for n in ("EPERM", "EINVAL", "EEXIST", "ESRCH"))


@pytest.fixture
def arena(tmp_path):
    return Arena(tmp_path)


def _param(arena, g, cmd: int, index: int, value: int = 0, domid: int = abi.DOMID_SELF) -> tuple[int, int]:
    g.write(g.buf(), struct.pack("<HxxIQ", domid, index, value))
    rc = arena.call(g, "hvm_op", cmd, g.buf())
    return rc, struct.unpack("<Q", g.read(g.buf(8), 8))[0]


def test_a_guest_sets_only_the_params_hvm_allow_set_param_lets_it(arena):
    h = arena.hvm
    before = dict(h.dom.hvm_params)
    for index in range(HVM_NR_PARAMS):
        if index in GUEST_SETTABLE:
            continue
        want = EEXIST if index == abi.HVM_PARAM_ALTP2M else EINVAL if index in DEPRECATED else EPERM
        rc, _ = _param(arena, h, abi.HVMOP_set_param, index, 0x1234)
        assert rc == want, abi.HVM_PARAM_NAMES.get(index, index)
    assert _param(arena, h, abi.HVMOP_set_param, HVM_NR_PARAMS, 1)[0] == EINVAL
    assert _param(arena, h, abi.HVMOP_set_param, 0xFFFF_FFFF, 1)[0] == EINVAL
    assert h.dom.hvm_params == before, "a refused param changed"
    # the ones it may set, with hvm_set_param()'s checks of the value
    assert _param(arena, h, abi.HVMOP_set_param, abi.HVM_PARAM_X87_FIP_WIDTH, 5)[0] == EINVAL
    assert _param(arena, h, abi.HVMOP_set_param, abi.HVM_PARAM_X87_FIP_WIDTH, 8)[0] == 0
    assert _param(arena, h, abi.HVMOP_set_param, abi.HVM_PARAM_ACPI_IOPORTS_LOCATION, 7)[0] == EINVAL
    assert _param(arena, h, abi.HVMOP_set_param, abi.HVM_PARAM_STORE_EVTCHN, 9)[0] == 0
    assert h.dom.hvm_params[abi.HVM_PARAM_STORE_EVTCHN] == 9
    assert h.dom.alive
    arena.untouched()


def test_a_guest_reads_only_what_hvm_allow_get_param_lets_it(arena):
    h = arena.hvm
    h.dom.hvm_params[abi.HVM_PARAM_IOREQ_PFN] = 0xFEFF0
    rc, value = _param(arena, h, abi.HVMOP_get_param, abi.HVM_PARAM_IOREQ_PFN)
    assert (rc, value) == (EPERM, 0), "the device model's ioreq page is not the guest's to see"
    assert _param(arena, h, abi.HVMOP_get_param, abi.HVM_PARAM_PAE_ENABLED)[0] == EINVAL
    rc, value = _param(arena, h, abi.HVMOP_get_param, abi.HVM_PARAM_STORE_PFN)
    assert rc == 0 and value == h.dom.hvm_params[abi.HVM_PARAM_STORE_PFN]
    # someone else's: XSM_TARGET, before the index filter; a missing domain -ESRCH
    victim = arena.victim.dom.domid
    assert _param(arena, h, abi.HVMOP_get_param, abi.HVM_PARAM_STORE_PFN, domid=victim)[0] == EPERM
    assert _param(arena, h, abi.HVMOP_set_param, abi.HVM_PARAM_CALLBACK_IRQ, 1, domid=victim)[0] == EPERM
    assert _param(arena, h, abi.HVMOP_set_param, abi.HVM_PARAM_CALLBACK_IRQ, 1, domid=0x7FEF)[0] == ESRCH
    arena.untouched()


def test_the_control_domain_passes_the_filter_but_set_once_params_stay_set(arena):
    """dom0's services run in Python (no vCPU to copy from), so the filter is asked directly."""
    h, dom0 = arena.hvm, arena.host.domains[0]
    assert hvm_params.allow_set(dom0, h.dom, abi.HVM_PARAM_IOREQ_PFN, 0xFEFF0) == 0
    h.dom.hvm_params[abi.HVM_PARAM_IOREQ_PFN] = 0xFEFF0
    assert hvm_params.allow_set(dom0, h.dom, abi.HVM_PARAM_IOREQ_PFN, 0xFEFF0) == 0
    assert hvm_params.allow_set(dom0, h.dom, abi.HVM_PARAM_IOREQ_PFN, 0xFEFF1) == EEXIST
    assert hvm_params.allow_get(dom0, h.dom, abi.HVM_PARAM_IOREQ_PFN) == 0
    assert hvm_params.allow_set(dom0, h.dom, abi.HVM_PARAM_ALTP2M, 1) == EEXIST
    assert hvm_params.allow_set(dom0, h.dom, abi.HVM_PARAM_NESTEDHVM, 1) == EINVAL


def test_a_vm86_tss_that_cannot_fit_crashes_the_guest_that_set_it(arena):
    """hvm_set_param() HVM_PARAM_VM86_TSS_SIZED: a size below struct tss32 is domain_crash(d)."""
    h = arena.hvm
    assert _param(arena, h, abi.HVMOP_set_param, abi.HVM_PARAM_VM86_TSS_SIZED, (16 << 32) | 0x1000)[0] == EINVAL
    assert h.dom.state == "crashed"
    arena.untouched()
