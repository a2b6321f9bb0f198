"""A host without VT-x/AMD-V ([host] hvm = false, machines/no-vtx.toml): Xen runs PV guests only.
xl info follows xl_info.c and init_xen_cap_info() (xen/arch/x86/setup.c: no hvm-3.0-* tokens when
!hvm_enabled); an HVM or PVH guest is refused by arch_sanitise_domain_config()
(xen/arch/x86/domain.c, -EINVAL) and reported as libxl_create.c reports it."""

from __future__ import annotations

import functools

import pytest

from lab.errors import UserError
from lab.session.scenario import load_scenario, start_scenario
from xen_helpers import MACHINES

LIBXL_LINES = ("libxl: error: libxl_create.c:700:libxl__domain_make: domain creation fail: Invalid argument\n"
               "libxl: error: libxl_create.c:1309:initiate_domain_create: cannot make domain: -3")


@functools.cache
def no_vtx():
    host, xl = start_scenario(load_scenario(MACHINES / "no-vtx.toml"))
    host.run(400_000)
    return host, xl


def info_line(xl, key: str) -> str:
    """The value of one `xl info` line ("virt_caps              : pv ...")."""
    (line,) = [ln for ln in xl.info().splitlines() if ln.split(":", 1)[0].strip() == key]
    return line.split(":", 1)[1].strip()


def test_xl_info_shows_no_hvm():
    _, xl = no_vtx()
    assert info_line(xl, "virt_caps").split() == ["pv", "pv_directio", "shadow", "gnttab-v1"]
    assert info_line(xl, "xen_caps").split() == ["xen-3.0-x86_64"]


def test_a_host_with_vtx_still_offers_hvm():
    host, xl = start_scenario(load_scenario(MACHINES / "default.toml"))
    assert "hvm" in info_line(xl, "virt_caps").split() and "hap" in info_line(xl, "virt_caps").split()
    assert "hvm-3.0-x86_64" in info_line(xl, "xen_caps")


def test_pv_guests_run():
    host, xl = no_vtx()
    assert host.config.hvm is False and host.config.ept is False
    assert "xenlab kernel (PV guest, 64-bit" in xl.console("pv-guest")
    assert "xenlab kernel (PV guest, 32-bit" in xl.console("pv32-guest")


@pytest.mark.parametrize("cfg", ["hvm-guest.cfg", "pvh-guest.cfg"])
def test_hvm_and_pvh_guests_are_refused_as_libxl_refuses_them(cfg):
    host, xl = no_vtx()
    before = sorted(host.domains)
    with pytest.raises(UserError) as e:
        xl.create(MACHINES / cfg)
    assert str(e.value) == LIBXL_LINES
    assert sorted(host.domains) == before                       # nothing was built
    assert host.dmesg[-1] == "(XEN) arch/x86/domain.c:604: HVM support not available"


def test_ept_without_vtx_is_a_scenario_error(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[host]\nhvm = false\nept = true\n")
    with pytest.raises(UserError, match="ept = true needs hvm = true"):
        load_scenario(p)


def test_compare_on_the_host_shows_which_modes_it_cannot_run(capsys):
    from lab.cli import main
    prog = MACHINES / "examples" / "hello-user.s"
    assert main(["compare", "--scenario", str(MACHINES / "no-vtx.toml"), "--modes", "pv,pv32,pvh",
                 "--workload", str(prog)]) == 0
    table = capsys.readouterr().out.splitlines()
    created = next(line for line in table if line.startswith("xl create")).split()[2:]
    assert created == ["ok", "ok", "refused"]
    exit_codes = next(line for line in table if line.startswith("exit code")).split()[2:]
    assert exit_codes == ["0", "0", "-"]
