"""mmu_update's ``foreigndom`` has two halves (public/xen.h): the low 16 bits name the page owner,
the high 16 bits (domid + 1) the owner of the page tables being written. Both are for the control
domain only (xen/arch/x86/mm.c, do_mmu_update: xsm_mmu_update checks the caller against each).

The refusals here assert only that the call fails and changes nothing: which errno Xen gives an
unprivileged pt_owner is a detail the lab may still align.
"""

from __future__ import annotations

import pytest

from lab.xen import abi as A
from test_xen_mm import D0, D1, D2, D2_FRAME, DATA0, RW, P, Env, e, info, slot

D2_L1 = D2_FRAME
D2_DATA = D2_FRAME + 1


@pytest.fixture
def env() -> Env:
    return Env()


def pt_owner(domid: int, pg_owner: int = A.DOMID_SELF) -> int:
    return ((domid + 1) << 16) | pg_owner


def d2_with_a_pinned_l1(env: Env) -> None:
    assert env.pin(D2_L1, 1, dom=D2) == (0, 1)
    env.ok()


def test_a_guest_cannot_write_another_domains_page_table_through_pt_owner(env):
    d2_with_a_pinned_l1(env)
    before = (info(env, DATA0).count, info(env, DATA0).type_count)
    for foreigndom, value in ((pt_owner(D2), e(DATA0, P)),           # its own frame into d2's table
                              (pt_owner(D2), e(DATA0, P | RW)),
                              (pt_owner(D2, D2), e(D2_DATA, P))):       # d2's frame into d2's table
        rc, done = env.mm.mmu_update(D1, [(slot(D2_L1, 0), value)], foreigndom)
        assert rc < 0 and done == 0, hex(foreigndom)
        assert env.get(D2_L1, 0) == 0, "d2's table is untouched"
    assert (info(env, DATA0).count, info(env, DATA0).type_count) == before
    assert info(env, D2_DATA).count == 1
    env.ok()


def test_pt_owner_naming_itself_is_the_ordinary_update(env):
    env.pin(0x16, 1)                                              # one of d1's spare frames as its L1
    assert env.mm.mmu_update(D1, [(slot(0x16, 0), e(DATA0, P))], pt_owner(D1)) == (0, 1)
    assert env.get(0x16, 0) == e(DATA0, P)
    env.ok()


def test_the_control_domain_may_write_a_guests_page_table(env):
    d2_with_a_pinned_l1(env)
    assert env.mm.mmu_update(D0, [(slot(D2_L1, 0), e(D2_DATA, P))], pt_owner(D2, D2)) == (0, 1)
    assert env.get(D2_L1, 0) == e(D2_DATA, P)
    assert info(env, D2_DATA).count == 2
    env.ok()


def test_a_pt_owner_that_does_not_exist(env):
    rc, done = env.mm.mmu_update(D0, [(slot(D2_L1, 0), e(D2_DATA, P))], pt_owner(77))
    assert (rc, done) == (-3, 0)                              # ESRCH (public/errno.h)
