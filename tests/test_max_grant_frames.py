"""xl.cfg's max_grant_frames: read as xl_parse.c reads it (xlu_cfg_get_bounded_long, 0..INT_MAX),
passed to Xen in the createdomain domctl, and checked by grant_table_init()
(xen/common/grant_table.c): fewer than INITIAL_NR_GRANT_FRAMES is -EINVAL, reported as
libxl_create.c reports a failed domain_create."""

from __future__ import annotations

import pytest

from lab.dom0.xlcfg import ConfigError, load_config
from lab.errors import UserError
from lab.session.scenario import load_scenario, start_scenario
from xen_helpers import MACHINES, two_pv_guests

LIBXL_LINES = ("libxl: error: libxl_create.c:700:libxl__domain_make: domain creation fail: Invalid argument\n"
               "libxl: error: libxl_create.c:1309:initiate_domain_create: cannot make domain: -3")
GUEST = (MACHINES / "pv-guest.cfg").read_text()


def test_the_key_is_read_kept_and_written_back():
    conf = load_config(GUEST + "max_grant_frames = 8\n", "g.cfg")
    assert conf.max_grant_frames == 8
    assert not any("max_grant_frames" in w for w in conf.warnings), "it has an effect: no warning"
    assert load_config(conf.to_text(), "g.cfg").max_grant_frames == 8
    assert load_config(GUEST, "g.cfg").max_grant_frames == -1, "absent: Xen's default"


@pytest.mark.parametrize("value, words", [
    ("'-1'", "value `-1' is smaller than minimum bound '0'"),
    ("2147483648", "value `2147483648' is greater than maximum bound '2147483647'"),
    ("'many'", "parameter `max_grant_frames' is not a valid number"),
])
def test_a_bad_value_is_one_message_naming_the_line(value, words):
    text = GUEST + f"max_grant_frames = {value}\n"
    line = text.count("\n")
    with pytest.raises(ConfigError) as e:
        load_config(text, "g.cfg")
    assert f"g.cfg:{line}:" in str(e.value) and words in str(e.value)


@pytest.mark.machine
def test_xl_create_passes_it_to_xen_and_zero_is_refused(tmp_path):
    host, xl = start_scenario(load_scenario(MACHINES / "default.toml"))
    cfg = tmp_path / "small.cfg"
    cfg.write_text(GUEST.replace('"pv-guest"', '"small"') + "max_grant_frames = 4\n")
    assert xl.create(cfg).max_grant_frames == 4
    zero = tmp_path / "zero.cfg"
    zero.write_text(GUEST.replace('"pv-guest"', '"zero"') + "max_grant_frames = 0\n")
    before = sorted(host.domains)
    with pytest.raises(UserError) as e:
        xl.create(zero)
    assert str(e.value) == LIBXL_LINES
    assert sorted(host.domains) == before
    assert host.dmesg[-1] == "(XEN) common/grant_table.c:2016: Bad grant table size: 0 frames"


@pytest.mark.machine
@pytest.mark.parametrize("value, ports", [("16", 16), ("0x20", 32), ("0", 1023), ("100000", 4095)])
def test_max_event_channels_is_read_as_xl_reads_it_and_bounds_the_ports(value, ports):
    # xl_parse.c: xlu_cfg_get_long (strtol, base 0); libxl: 0 is its default 1023;
    # evtchn_init(): d->max_evtchn_port, never past the 2-level ABI's ports
    conf = load_config(GUEST + f"max_event_channels = {value}\n", "g.cfg")
    assert not any("max_event_channels" in w for w in conf.warnings), "it has an effect: no warning"
    assert load_config(conf.to_text(), "g.cfg") == conf
    host, a, b = two_pv_guests()
    b.config = conf
    assert host.evtchn.max_evtchn_port(b.domid) == ports


@pytest.mark.machine
def test_on_arm_too(tmp_path):
    # the Arm host takes the same key: XENMEM_add_to_physmap of grant frame idx stops at it
    host, xl = start_scenario(load_scenario(MACHINES / "arm" / "arm.toml"))
    guest = (MACHINES / "arm" / "guest.cfg").read_text()
    zero = tmp_path / "zero.cfg"
    zero.write_text(guest.replace('name = "arm-guest"', 'name = "zero"') + "max_grant_frames = 0\n")
    with pytest.raises(UserError) as e:
        xl.create(zero)
    assert str(e.value) == LIBXL_LINES
    assert host.dmesg[-1] == "(XEN) common/grant_table.c:2016: Bad grant table size: 0 frames"
    two = tmp_path / "two.cfg"
    two.write_text(guest.replace('name = "arm-guest"', 'name = "two"') + "max_grant_frames = 2\n")
    assert xl.create(two).max_grant_frames == 2


@pytest.mark.machine
def test_a_table_larger_than_the_host_s_memory_is_refused_not_a_crash():
    # A config may allow far more grant frames than the host has: growing the table past the
    # free memory fails as gnttab_grow_table() fails (GNTST_general_error), the host runs on
    host, a, b = two_pv_guests()
    b.max_grant_frames = 1 << 30
    free = len(host.free_frames)
    assert host.grant_tables.setup_table(b.domid, free + 10)[0] == -1
    assert len(host.free_frames) == free, "the table stays as it was"
    assert host.grant_tables.frame_for_physmap(b.domid, free + 10) is None
    assert host.grant_tables.setup_table(b.domid, 2)[0] == 0
