"""xl.cfg: lexing and parsing as libxlu does, keys as xl reads them, device specs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.dom0.xlcfg import (
    ConfigError, DomainConfig, devid_to_vdev, generate_mac, load_config, parse_cfg,
    parse_disk_spec, parse_settings, parse_vif_spec, vdev_to_devid,
)

DATA = Path(__file__).parent / "data" / "xlcfg"


def err(text: str, filename: str = "t.cfg") -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        load_config(text, filename)
    return ei.value


def perr(text: str, filename: str = "t.cfg") -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        parse_cfg(text, filename)
    return ei.value


# --- lexer and parser -------------------------------------------------------------------

def test_basic_syntax():
    cfg = parse_cfg('name="h0"\ntype="hvm"\n')
    assert cfg == {"name": "h0", "type": "hvm"}
    assert parse_cfg('name="h0"; type="hvm"') == {"name": "h0", "type": "hvm"}


def test_comments_blank_lines_and_missing_final_newline():
    text = "# a comment\n\n   \nname = 'x'   # trailing comment\n\t; ;\nmemory = 64"
    assert parse_cfg(text) == {"name": "x", "memory": "64"}
    assert parse_cfg("") == {}
    assert parse_cfg("\n\n# only a comment\n") == {}


def test_comment_at_end_of_file_needs_newline():
    e = perr("name = 'x'\n# no newline")
    assert e.line == 2
    assert "lexical error" in e.message


def test_numbers_are_strings_until_read():
    cfg = parse_cfg("a = 10\nb = 010\nc = 0x1f\nd = '512'\ne = 1e5")
    assert cfg == {"a": "10", "b": "010", "c": "0x1f", "d": "512", "e": "1e5"}
    c = load_config("name='n'\nmemory = 0x100\nvcpus = 010\nmaxvcpus = '12'")
    assert (c.memory, c.vcpus, c.maxvcpus) == (256, 8, 12)
    assert err("name='n'\n\nmemory = 1e5").line == 3
    assert "not a valid number" in err("name='n'\nmemory = 09").message
    assert "out of range" in err("name='n'\nmemory = 99999999999999999999999").message


def test_strings_and_escapes():
    cfg = parse_cfg(r"""a = 'it\'s' ; b = "say \"hi\"" ; c = 'back\\slash' ; d = "t\tn\n" """)
    assert cfg == {"a": "it's", "b": 'say "hi"', "c": "back\\slash", "d": "t\tn\n"}
    assert parse_cfg("a = 'mixed \"quotes\"'") == {"a": 'mixed "quotes"'}
    assert parse_cfg("a = ''") == {"a": ""}
    e = perr("a = 'ok'\nb = 'bad \\q escape'")
    assert e.line == 2 and "invalid character after backslash" in e.message
    assert "not supported" in perr(r"a = '\x41'").message
    e = perr("a = 'unterminated\nb = 1")
    assert e.line == 1 and "lexical error" in e.message


def test_lists_nested_trailing_commas_and_newlines():
    cfg = parse_cfg("l = [ 'a', 1, [ 'b', [] ], ]\nm = []\nn = [\n  'x',  # c\n\n  'y'\n]\n")
    assert cfg == {"l": ["a", "1", ["b", []]], "m": [], "n": ["x", "y"]}
    assert perr("l = [,]").line == 1
    e = perr("l = [\n 'a'\n 'b'\n]")
    assert e.line == 3 and "syntax error" in e.message
    assert perr("l = [ 'a' ; 'b' ]").line == 1


def test_append():
    cfg = parse_cfg("extra = 'a'\nextra += ' b'\nl = [1]\nl += [2, 3]\nnew += 'x'")
    assert cfg == {"extra": "a b", "l": ["1", "2", "3"], "new": "x"}
    e = perr("a = 'x'\n\na += [1]")
    assert e.line == 3 and "can't add [list]" in e.message
    e = err("name='n'\nmemory = 1\nmemory += 2")
    assert e.line == 3 and "+=" in e.message


def test_last_setting_wins():
    assert parse_cfg("a = 1\nb = 2\na = 3") == {"a": "3", "b": "2"}
    s = parse_settings("a = 1\nb = 2\na = 3")
    assert list(s) == ["a", "b"] and s["a"].line == 3


def test_syntax_errors_report_the_line():
    cases = {
        "name = 'x'\nmemory 128\n": 2,
        "name = 'x'\n\n\nmemory = \n": 4,
        "name = 'x' 'y'\n": 1,
        "name = 'x'\n= 3\n": 2,
        "a = [1, 2\n": 2,
        "a = bare\n": 1,
    }
    for text, line in cases.items():
        e = perr(text, "s.cfg")
        assert e.line == line, (text, e)
        assert e.file == "s.cfg"
        assert str(e).startswith(f"s.cfg:{line}: config parsing error")


def test_lexical_errors():
    e = perr("name = 'x'\nMemory = 128")
    assert e.line == 2 and "lexical error" in e.message and "lower case" in e.message
    e = perr("name = 'x'\r\nmemory = 1\r\n")
    assert e.line == 1 and "DOS line endings" in e.message
    e = perr("name = 'x'\nmemory = 2 * 64\n")
    assert e.line == 2
    e = perr("name = 'x'\nkernel = os.path.join('a')\n")
    assert e.line == 2 and "Python" in e.message
    e = perr("a = -1")
    assert "lexical error" in e.message


def test_config_error_str():
    e = ConfigError("f.cfg", 7, "boom")
    assert str(e) == "f.cfg:7: boom"
    assert (e.file, e.line, e.message) == ("f.cfg", 7, "boom")


def test_deep_nesting_is_an_error_not_a_crash():
    e = perr("a = " + "[" * 5000 + "]" * 5000)
    assert "nested too deeply" in e.message


# --- keys ---------------------------------------------------------------------------------

def test_defaults():
    c = load_config("name = 'tiny'")
    assert c.name == "tiny" and c.type == "pv"
    assert (c.memory, c.maxmem, c.vcpus, c.maxvcpus) == (32, 32, 1, 1)
    assert (c.on_poweroff, c.on_reboot, c.on_crash) == ("destroy", "restart", "destroy")
    assert c.hap is True and c.xen_platform_pci is True and c.viridian is False
    assert c.cmdline is None and c.disks == [] and c.vifs == [] and c.warnings == []
    assert c.kernel_mode == "pv" and not c.lab_pv32


def test_name_is_mandatory():
    e = err("memory = 64\nvcpus = 1\n")
    assert e.message == "Domain name must be specified."
    assert e.line == 2


def test_memory_and_vcpus():
    c = load_config("name='m'\nmaxmem = 512")
    assert (c.memory, c.maxmem) == (512, 512)
    c = load_config("name='m'\nmemory = 256\nmaxmem = 1024\nvcpus = 0")
    assert (c.memory, c.maxmem, c.vcpus) == (256, 1024, 1)
    assert err("name='m'\nmemory = 512\nmaxmem = 256").line == 3
    e = err("name='m'\nvcpus = 4\nmaxvcpus = 2")
    assert e.line == 3 and "maxvcpus < vcpus" in e.message
    assert err("name='m'\nmemory = [1]").message.endswith("should be a single value")


def test_type_and_builder():
    assert load_config("name='a'\ntype='pvh'").type == "pvh"
    c = load_config("name='a'\nbuilder='hvm'")
    assert c.type == "hvm"
    assert c.warnings == ["<string>:2: \"builder\" is deprecated since Xen 4.10; use"
                          " type=\"hvm\""]
    c = load_config("name='a'\nbuilder='generic'\ntype='pv'")
    assert c.type == "pv" and len(c.warnings) == 1
    e = err("name='a'\ntype='pv'\nbuilder='hvm'")
    assert e.line == 3 and e.message == 'Contradicting "builder" and "type" options specified.'
    assert err("name='a'\ntype='kvm'").message == "Invalid domain type kvm."
    assert err("name='a'\nbuilder='linux'").line == 2


def test_cmdline_composition():
    assert load_config("name='a'\nroot='/dev/xvda1'\nextra='quiet'").cmdline == \
        "root=/dev/xvda1 quiet"
    assert load_config("name='a'\nroot='/dev/xvda1'").cmdline == "root=/dev/xvda1"
    assert load_config("name='a'\nextra='console=hvc0'").cmdline == "console=hvc0"
    c = load_config("name='a'\nroot='/dev/xvda1'\ncmdline='init=/bin/sh'")
    assert c.cmdline == "init=/bin/sh"
    assert c.warnings == ["<string>:3: ignoring root= and extra= in favour of cmdline="]


def test_actions():
    c = load_config("name='a'\non_crash='coredump-restart'\non_reboot='destroy'")
    assert (c.on_poweroff, c.on_reboot, c.on_crash) == ("destroy", "destroy",
                                                        "coredump-restart")
    for action in ("destroy", "restart", "rename-restart", "preserve", "coredump-destroy",
                   "coredump-restart", "soft-reset"):
        assert load_config(f"name='a'\non_poweroff='{action}'").on_poweroff == action
    e = err("name='a'\n\non_poweroff='explode'")
    assert e.line == 3 and e.message == 'Unknown on_poweroff action "explode" specified'


def test_platform_keys():
    c = load_config("name='a'\ntype='hvm'\nhap=0\nxen_platform_pci=0\nviridian=1")
    assert (c.hap, c.xen_platform_pci, c.viridian) == (False, False, True)
    c = load_config("name='a'\ntype='hvm'\nviridian=['base','!freq']")
    assert c.viridian == ("base", "!freq")
    assert load_config("name='a'\ntype='hvm'\ndevice_model_version='qemu-xen'") \
        .device_model_version == "qemu-xen"
    e = err("name='a'\ntype='hvm'\ndevice_model_version='qemu-xen-traditional'")
    assert e.line == 3
    assert e.message == 'Unknown device_model_version "qemu-xen-traditional" specified'
    assert "not a valid number" in err("name='a'\nhap='yes'").message


def test_hpet_is_read_and_kept():
    """libxl_create.c: u.hvm.hpet defaults to true; hpet = 0 is acted on, not a host-only key."""
    assert load_config("name='a'\ntype='hvm'").hpet is True
    c = load_config("name='a'\ntype='hvm'\nhpet=0")
    assert c.hpet is False and c.warnings == [] and "hpet" not in c.host_keys
    assert "hpet = 0" in c.to_text() and load_config(c.to_text()) == c
    assert "hpet" not in load_config("name='a'\ntype='hvm'\nhpet=1").to_text()
    assert load_config("name='a'\nhpet=0").warnings == ["<string>:2: HVM-only key 'hpet' is ignored for a pv guest"]
    assert "not a valid number" in err("name='a'\ntype='hvm'\nhpet='off'").message


def test_lab_keys():
    c = load_config("name='a'\nlab_pv32=1\nlab_program='machines/programs/hello.S'")
    assert c.lab_pv32 and c.lab_program == "machines/programs/hello.S"
    c = load_config("name='a'\ntype='hvm'\nlab_kernel_mode='pvhvm'")
    assert c.kernel_mode == "pvhvm"
    assert load_config("name='a'\ntype='hvm'").kernel_mode == "hvm"
    assert load_config("name='a'\ntype='pvh'").kernel_mode == "pvh"
    assert err("name='a'\ntype='hvm'\nlab_kernel_mode='pv'").line == 3
    assert err("name='a'\nlab_kernel_mode='bare'").line == 2
    assert err("name='a'\ntype='hvm'\nlab_pv32=1").line == 3
    c = load_config("name='a'\ntype='hvm'\nxen_platform_pci=0\nlab_kernel_mode='hvm-pvdrivers'")
    assert c.warnings == ["<string>:3: xen_platform_pci=0 hides the Xen platform PCI device:"
                          " the guest's PV drivers will not load"]


def test_unknown_host_only_and_type_specific_warnings():
    c = load_config("name='a'\nfoo = 1\nvnc = 1\ncpus = '0-3'\nhap = 0\nbootloader='pygrub'",
                    "w.cfg")
    assert c.warnings == [
        "w.cfg:2: unknown key 'foo' ignored",
        "w.cfg:3: HVM-only key 'vnc' is ignored for a pv guest",
        "w.cfg:4: host-only key 'cpus' has no effect in the lab",
        "w.cfg:5: key 'hap' applies to HVM and PVH guests only; ignored for a pv guest",
        "w.cfg:6: host-only key 'bootloader' has no effect in the lab",
    ]
    c = load_config("name='a'\ntype='pvh'\nserial='pty'", "w.cfg")
    assert c.warnings == ["w.cfg:3: HVM-only key 'serial' is ignored for a pvh guest"
                          " (a PVH guest has no device model)"]
    c = load_config("name='a'\ntype='hvm'\nvnc=1\nbootloader='pygrub'", "w.cfg")
    assert c.warnings == [
        "w.cfg:3: host-only key 'vnc' has no effect in the lab",
        "w.cfg:4: key 'bootloader' applies to PV and PVH guests only; ignored for an hvm guest",
    ]


# --- the example configs ---------------------------------------------------------------------

def test_example_pv():
    c = load_config(DATA / "pv.cfg")
    assert c.filename.endswith("pv.cfg")
    assert (c.name, c.type, c.memory, c.maxmem, c.vcpus) == ("pv-demo", "pv", 128, 256, 1)
    assert c.cmdline == "root=/dev/xvda1 console=hvc0 quiet"
    assert c.on_crash == "preserve"
    assert [d.devid for d in c.disks] == [51712]
    assert [v.mac for v in c.vifs][0] == "00:16:3e:5a:01:02"
    assert c.vifs[1].mac == generate_mac("pv-demo", 1) and c.vifs[1].devid == 1
    assert all(v.type == "vif" for v in c.vifs)
    assert c.warnings == []


def test_example_hvm():
    c = load_config(DATA / "hvm.cfg")
    assert (c.type, c.memory, c.vcpus, c.hap) == ("hvm", 256, 2, True)
    hda, hdc = c.disks
    assert (hda.vdev, hda.devid, hda.access) == ("hda", 768, "rw")
    assert (hdc.vdev, hdc.devid, hdc.devtype, hdc.access) == ("hdc", 5632, "cdrom", "r")
    (vif,) = c.vifs
    assert (vif.type, vif.model, vif.bridge) == ("ioemu", "e1000", "xenbr0")
    assert c.warnings == [f"{c.filename}:21: host-only key 'boot' has no effect in the lab"]


def test_example_pvh():
    c = load_config(DATA / "pvh.cfg")
    assert (c.type, c.vcpus, c.maxvcpus) == ("pvh", 2, 4)
    assert c.cmdline == "console=hvc0 root=/dev/xvda1"
    assert c.disks[0].devid == 51712 and c.disks[0].target == "/dev/vg/pvh-demo"
    assert c.vifs[0].type == "vif"
    assert c.warnings == []


def test_example_builder_hvm():
    c = load_config(DATA / "builder_hvm.cfg")
    assert (c.type, c.memory, c.vcpus) == ("hvm", 256, 1)
    assert c.viridian == ("base", "freq") and c.kernel_mode == "pvhvm"
    (d,) = c.disks
    assert (d.target, d.vdev, d.devid, d.access, d.format) == ("/dev/vg/legacy", "hda", 768,
                                                               "rw", "raw")
    assert c.vifs[0].mac == "00:16:3e:0a:0b:0c"
    assert c.warnings == [f"{c.filename}:3: \"builder\" is deprecated since Xen 4.10;"
                          " use type=\"hvm\""]


def test_example_disk_keywords():
    c = load_config(DATA / "disk_keywords.cfg")
    a, b, cd, q = c.disks
    assert (a.vdev, a.devid, a.format, a.access, a.target) == (
        "xvda", 51712, "raw", "rw", "/dev/vg/disks-root")
    assert (b.devid, b.format, b.access, b.target) == (
        51728, "qcow2", "r", "/srv/images/data,with,commas.qcow2")
    assert (cd.devtype, cd.access, cd.devid) == ("cdrom", "r", 51744)
    assert q.devid == (1 << 28) | (16 << 8)
    assert (q.backendtype, q.script) == ("phy", "block")
    assert c.warnings == []


def test_example_host_only():
    c = load_config(DATA / "host_only.cfg")
    f = c.filename
    assert c.warnings == [
        f"{f}:7: host-only key 'cpus' has no effect in the lab",
        f"{f}:8: host-only key 'cpu_weight' has no effect in the lab",
        f"{f}:9: host-only key 'vnc' has no effect in the lab",
        f"{f}:10: host-only key 'vncdisplay' has no effect in the lab",
        f"{f}:11: host-only key 'serial' has no effect in the lab",
        f"{f}:12: host-only key 'boot' has no effect in the lab",
        f"{f}:13: host-only key 'usb' has no effect in the lab",
        f"{f}:14: host-only key 'localtime' has no effect in the lab",
        f"{f}:15: host-only key 'on_watchdog' has no effect in the lab",
    ]
    assert c.host_keys["serial"].python() == "pty"
    assert c.vifs[0].bridge == "xenbr1" and c.vifs[0].type == "ioemu"


def test_example_pv_bootloader():
    c = load_config(DATA / "pv_bootloader.cfg")
    f = c.filename
    assert c.lab_pv32 and c.type == "pv"
    assert c.disks[0].target == "/srv/images/pygrub.img" and c.disks[0].access == "rw"
    assert c.warnings == [
        f"{f}:4: host-only key 'bootloader' has no effect in the lab",
        f"{f}:6: HVM-only key 'vnc' is ignored for a pv guest",
        f"{f}:7: unknown key 'flavour' ignored",
    ]


@pytest.mark.parametrize("path", sorted(DATA.glob("*.cfg")), ids=lambda p: p.name)
def test_examples_round_trip(path):
    c = load_config(path)
    again = load_config(c.to_text(), "again.cfg")
    assert again == c
    assert load_config(str(path)) == c


def test_load_config_from_path_string_and_missing_file():
    c = load_config(str(DATA / "pvh.cfg"))
    assert c.name == "pvh-demo"
    with pytest.raises(ConfigError) as ei:
        load_config(DATA / "does-not-exist.cfg")
    assert "unable to open configuration file" in ei.value.message
    with pytest.raises(ConfigError) as ei:
        load_config(str(DATA / "does-not-exist.cfg"))
    assert "unable to open configuration file" in ei.value.message


# --- disk specs ----------------------------------------------------------------------------

def test_disk_positional():
    d = parse_disk_spec("/dev/vg/g,raw,xvda,rw")
    assert (d.target, d.format, d.vdev, d.access, d.devid, d.devtype) == (
        "/dev/vg/g", "raw", "xvda", "rw", 51712, "disk")
    d = parse_disk_spec("/img,qcow2,xvdb,ro")
    assert (d.format, d.access, d.readwrite, d.mode) == ("qcow2", "r", False, "r")
    d = parse_disk_spec("/img,,xvdc")
    assert (d.format, d.access) == ("raw", "rw")
    d = parse_disk_spec("/iso,raw,hdc,cdrom")
    assert (d.devtype, d.access, d.removable) == ("cdrom", "r", True)
    d = parse_disk_spec(",raw,hdc:cdrom,r")
    assert (d.target, d.devtype, d.format, d.vdev) == ("", "cdrom", "empty", "hdc")
    d = parse_disk_spec("phy:/dev/vg/x,xvda,w")          # deprecated prefix form
    assert (d.target, d.vdev, d.access) == ("/dev/vg/x", "xvda", "rw")
    d = parse_disk_spec("qcow2:/img.q,xvdb,r")
    assert (d.format, d.target, d.vdev, d.access) == ("qcow2", "/img.q", "xvdb", "r")
    d = parse_disk_spec("iscsi:iqn.2001-04.com.example:disk,xvdc,w")
    assert d.script == "block-iscsi"


def test_disk_keyword_form():
    d = parse_disk_spec("format=raw, vdev=xvda, access=rw, target=/path/with,commas")
    assert (d.format, d.vdev, d.access, d.target) == ("raw", "xvda", "rw", "/path/with,commas")
    d = parse_disk_spec("vdev=xvdb, devtype=cdrom, target=/x.iso")
    assert (d.devtype, d.access) == ("cdrom", "r")
    d = parse_disk_spec("vdev=hdc, cdrom")
    assert d.target is None and d.format == "empty" and d.is_cdrom
    d = parse_disk_spec("backendtype=qdisk, vdev=xvda, script=block-drbd, target=/d")
    assert (d.backendtype, d.script) == ("qdisk", "block-drbd")
    d = parse_disk_spec("/img,raw,xvda,rw,discard,untrusted")
    assert (d.discard, d.trusted) == (True, False)


def test_disk_errors():
    cases = {
        "/img,xvda,rw": "unknown value for format",
        "/img,raw,xvda,rw,extra": "too many positional parameters",
        "format=vmdk, vdev=xvda, target=/x": "unknown value for format",
        "access=rx, vdev=xvda, target=/x": "unknown value for access",
        "colour=blue, vdev=xvda, target=/x": "unknown parameter",
        "/img,raw": "no vdev specified",
        "vdev=xvda": "no target specified (and device not removable)",
        "vdev=xvda, vdev=xvdb, target=/x": "vdev respecified",
        "/img,raw,xvd0,rw": "Invalid or unsupported virtual disk identifier xvd0",
        "/img,raw,hde,rw": "Invalid or unsupported virtual disk identifier hde",
        "foo:/img,raw,xvda": "unknown deprecated disk prefix",
        "=x": "bad disk syntax",
        "devtype=floppy, vdev=xvda, target=/x": "unknown value for type",
    }
    for spec, message in cases.items():
        with pytest.raises(ConfigError) as ei:
            parse_disk_spec(spec, "d.cfg", 4)
        assert message in ei.value.message, (spec, ei.value)
        assert ei.value.line == 4 and ei.value.file == "d.cfg"
    e = err("name='a'\n\ndisk = ['/img,raw,xvda,rw',\n        '/img2,raw,xvda,rw']")
    assert e.line == 4 and "same device" in e.message
    e = err("name='a'\ndisk = [\n  '/img,raw,xvda,rw',\n\n  '/img2,raw,xvd9,rw',\n]")
    assert e.line == 5 and "xvd9" in e.message
    e = err("name='a'\ndisk = ['/img,raw,xvda,rw', ['nested']]")
    assert e.line == 2
    e = err("name='a'\ndisk = '/img,raw,xvda,rw'")
    assert "should be a list" in e.message
    e = err("name='a'\ndisk = ['/img,xvda,rw']")
    assert str(e) == ("t.cfg:2: config parsing error in disk specification: unknown value"
                      " for format: near `xvda' in `/img,xvda,rw'")


def test_vbd_devids():
    expected = {
        "xvda": 51712, "xvdb": 51728, "xvda1": 51713, "xvdb15": 51743, "xvdp": 51952,
        "xvdq": (1 << 28) | (16 << 8), "xvda16": (1 << 28) | 16,
        "xvdaa": (1 << 28) | (26 << 8), "xvdq3": (1 << 28) | (16 << 8) | 3,
        "hda": 768, "hdb": 832, "hda1": 769, "hdc": 22 << 8, "hdd": (22 << 8) | 64,
        "sda": 2048, "sdb": 2064, "sda1": 2049, "sdp": 2048 + 15 * 16,
        "d0p0": 51712, "d1p2": 51730, "d16p0": (1 << 28) | (16 << 8), "51712": 51712,
        "0x10": 16,
    }
    for vdev, devid in expected.items():
        assert vdev_to_devid(vdev) == devid, vdev
    for bad in ("xvd", "xvda01", "xvda256", "hde", "hda64", "sdq", "sda16", "vda", "", "xvdA"):
        assert vdev_to_devid(bad) is None, bad
    for vdev in ("xvda", "xvdb3", "xvdq", "xvdaa7", "hda", "hdd5", "sda", "sdp15"):
        assert devid_to_vdev(vdev_to_devid(vdev)) == vdev


# --- vif specs ------------------------------------------------------------------------------

def test_vif_specs():
    v = parse_vif_spec("mac=00:16:3e:01:02:03,bridge=xenbr1,ip=10.0.0.2,rate=10Mb/s", 0, "g")
    assert (v.mac, v.bridge, v.ip, v.rate, v.devid, v.type) == (
        "00:16:3e:01:02:03", "xenbr1", "10.0.0.2", "10Mb/s", 0, "vif")
    v = parse_vif_spec("", 2, "g")
    assert v.devid == 2 and v.bridge == "xenbr0" and v.script == "vif-bridge"
    assert v.mac == generate_mac("g", 2) and v.mac_generated
    v = parse_vif_spec("model=e1000", 0, "g", "hvm")
    assert (v.type, v.model) == ("ioemu", "e1000")
    v = parse_vif_spec("type=vif", 0, "g", "hvm")
    assert v.type == "vif" and v.model is None
    assert parse_vif_spec("", 0, "g", "hvm").model == "rtl8139"
    v = parse_vif_spec("mac=0:16:3E:a:b:c, script=vif-route, rate=1MB/s@20ms, devid=5", 0, "g")
    assert (v.mac, v.script, v.rate, v.devid) == ("00:16:3e:0a:0b:0c", "vif-route",
                                                  "1MB/s@20ms", 5)


def test_generated_macs_are_deterministic_and_in_xens_oui():
    macs = {generate_mac(name, i) for name in ("a", "b", "c") for i in range(4)}
    assert len(macs) == 12
    for m in macs:
        assert m.startswith("00:16:3e:")
        assert int(m.split(":")[3], 16) < 0x80
    assert generate_mac("guest", 0) == generate_mac("guest", 0)
    assert load_config("name='g'\nvif=['','']").vifs[1].mac == generate_mac("g", 1)


def test_vif_errors_and_warnings():
    for spec, message in {
        "mac=00:16:3e:01:02": "Invalid parameter `mac'.",
        "mac=00:16:3e:01:02:zz": "Invalid parameter `mac'.",
        "type=netfront": "Invalid parameter `type'.",
        "rate=fast": "vif rate",
    }.items():
        with pytest.raises(ConfigError) as ei:
            parse_vif_spec(spec, 0, "g", "pv", "v.cfg", 9)
        assert message in ei.value.message and ei.value.line == 9
    with pytest.raises(ConfigError) as ei:
        parse_vif_spec("type=ioemu", 0, "g", "pv")
    assert "emulated interface" in ei.value.message
    c = load_config("name='g'\n\nvif = ['bridge=xenbr0, speed=fast, netdev=eth0']", "v.cfg")
    assert c.warnings == [
        "v.cfg:3: unrecognized argument `speed=fast' in vif spec",
        "v.cfg:3: the netdev parameter is deprecated, please use gatewaydev instead",
    ]
    assert c.vifs[0].gatewaydev == "eth0"


# --- round trip and fuzz --------------------------------------------------------------------

def test_to_text_round_trip_of_a_rich_config():
    text = """
name = "rich \\"one\\""
type = "hvm"
memory = 300
maxmem = 400
vcpus = 2
maxvcpus = 3
kernel = "/k"
root = "/dev/xvda1"
extra = "quiet"
hap = 0
xen_platform_pci = 0
viridian = ["all"]
device_model_version = "qemu-xen"
disk = ["/a,raw,xvda,rw", "vdev=hdc, cdrom", "format=qcow2, vdev=xvdq, target=/b,c"]
vif = ["mac=00:16:3e:00:00:01", "devid=7,bridge=br9,model=e1000,rate=5MB/s"]
serial = ["pty", "null"]
vnc = 0
lab_kernel_mode = "hvm-pvdrivers"
lab_program = "p.S"
"""
    c = load_config(text, "rich.cfg")
    out = c.to_text()
    assert load_config(out, "again.cfg") == c
    assert load_config(load_config(out).to_text()).to_text() == out


IDENT = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
ATOM = st.one_of(
    st.text(alphabet=st.characters(blacklist_characters="\n\r"), max_size=12)
    .map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    st.from_regex(r"[0-9][0-9a-fx]{0,5}", fullmatch=True),
)
VALUE = st.recursive(ATOM, lambda inner: st.lists(inner, max_size=4).map(
    lambda xs: "[" + ", ".join(xs) + "]"), max_leaves=10)
NEAR_VALID = st.lists(
    st.tuples(IDENT, st.sampled_from(["=", "+=", " = ", "=="]), VALUE,
              st.sampled_from(["\n", ";", " # c\n", "", "\r\n", "\n\n"])),
    max_size=8,
).map(lambda items: "".join(k + op + v + end for k, op, v, end in items))
CHUNKS = st.lists(st.sampled_from([
    "name", "type", "memory", "vcpus", "disk", "vif", "=", "+=", "'hvm'", '"pv"', "'x'",
    "[", "]", ",", ";", "\n", "#", " ", "0x10", "010", "'/img,raw,xvda,rw'", "'mac=00:16:3e'",
    "builder", "'generic'", "maxmem", "1", "0", "\\", "'", '"', "-", "(", "lab_pv32",
    "lab_kernel_mode", "'pvhvm'", "on_crash", "'destroy'", "hap", "viridian", "cmdline",
    "'vdev=xvda, target=/x'", "'bridge=br0,rate=1Mb/s'", "é", "\t", "\r",
]), max_size=40).map("".join)


def _only_config_errors(text: str) -> None:
    try:
        cfg = load_config(text, "fuzz.cfg")
    except ConfigError as e:
        assert str(e).startswith("fuzz.cfg:")
        return
    assert isinstance(cfg, DomainConfig)
    assert load_config(cfg.to_text(), "again.cfg") == cfg


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_fuzz_arbitrary_text_only_raises_config_error(text):
    _only_config_errors(text)


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(CHUNKS)
def test_fuzz_config_shaped_text_only_raises_config_error(text):
    _only_config_errors(text)


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(NEAR_VALID)
def test_fuzz_near_valid_configs(text):
    try:
        parse_cfg(text, "fuzz.cfg")
    except ConfigError:
        pass
    _only_config_errors("name = 'n'\n" + text)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.text(max_size=60))
def test_fuzz_disk_and_vif_specs(spec):
    for fn in (lambda: parse_disk_spec(spec), lambda: parse_vif_spec(spec, 0, "g", "hvm")):
        try:
            fn()
        except ConfigError:
            pass
    d = None
    try:
        d = parse_disk_spec(spec)
    except ConfigError:
        pass
    if d is not None:
        assert parse_disk_spec(d.to_spec()) == d
    assert vdev_to_devid(spec) is None or vdev_to_devid(spec) >= 0


@pytest.mark.parametrize("value,expect", [("h", "hvm"), ("", "hvm"), ("hv", "hvm"), ("p", "pv"), ("pv", "pv"),
                                          ("pvh", "pvh"), ("hvmx", None), ("pvhx", None), ("x", None)])
def test_type_matches_by_prefix_as_xl_does(value, expect):
    # xl_parse.c: strncmp("hvm", value, strlen(value)), then "pv", then "pvh"
    text = f"name='a'\ntype='{value}'"
    if expect is None:
        with pytest.raises(ConfigError, match=f"Invalid domain type {value}"):
            load_config(text)
    else:
        assert load_config(text).type == expect


def test_builder_matches_by_prefix_as_xl_does():
    assert load_config("name='a'\nbuilder='h'").type == "hvm"
    assert load_config("name='a'\nbuilder='gen'").type == "pv"
    assert load_config("name='a'\nbuilder=''").type == "hvm"
    with pytest.raises(ConfigError, match="Contradicting"):
        load_config("name='a'\nbuilder='g'\ntype='h'")
