"""The XenStore tree: permissions, watches, transactions, errors, libxl's paths, the tools."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.dom0 import xsclient
from lab.dom0.xenstore import XenStore, XenStoreError, encode_request, message_type, parent_of
from lab.xen import abi


class FakeDom:
    """What the toolstack helpers read from a domain."""

    def __init__(self, domid: int, name: str, mem_pages: int = 8192, vcpus: int = 1, type: str = "pv") -> None:
        self.domid = domid
        self.name = name
        self.mem_pages = self.max_pages = mem_pages
        self.vcpus = [object()] * vcpus
        self.type = type
        self.store_evtchn = 0
        self.store_pfn = 0
        self.p2m: list[int] = []


def errno_of(fn, *args, **kw) -> str:
    with pytest.raises(XenStoreError) as exc:
        fn(*args, **kw)
    return exc.value.errno


@pytest.fixture
def store() -> XenStore:
    s = XenStore()
    xsclient.init_dom0(s)
    for d in (1, 2):
        xsclient.write_domain_home(s, FakeDom(d, f"guest{d}"))
    s.pending.clear()
    return s


# --- permissions -------------------------------------------------------------------------

def test_domu_reads_its_home_but_not_another_domains(store):
    assert store.call(1, "READ", "name") == "guest1"
    assert store.call(1, "READ", "/local/domain/1/memory/target") == "32768"
    assert errno_of(store.call, 1, "READ", "/local/domain/2/name") == "EACCES"
    assert errno_of(store.call, 1, "DIRECTORY", "/local/domain/2") == "EACCES"
    assert errno_of(store.call, 1, "WRITE", "/local/domain/2/data/x", "1") == "EACCES"
    assert errno_of(store.call, 1, "RM", "/local/domain/2/data") == "EACCES"
    assert store.node("/local/domain/2/data/x") is None


def test_domu_cannot_probe_what_does_not_exist_elsewhere(store):
    # ENOENT only to whoever the nearest existing parent lets in.
    assert errno_of(store.call, 1, "READ", "/local/domain/2/nonexistent") == "EACCES"
    assert errno_of(store.call, 1, "READ", "/local/domain/1/nonexistent") == "ENOENT"
    assert errno_of(store.call, 0, "READ", "/local/domain/2/nonexistent") == "ENOENT"


def test_domu_writes_its_control_and_data_nodes_only(store):
    store.call(1, "WRITE", "control/shutdown", "poweroff")
    store.call(1, "WRITE", "data/greeting", "hello")
    assert store.node("/local/domain/1/data/greeting").perms == (("n", 1),)    # the creator owns it
    assert errno_of(store.call, 1, "WRITE", "memory/target", "999999") == "EACCES"
    assert errno_of(store.call, 1, "WRITE", "name", "evil") == "EACCES"
    assert errno_of(store.call, 1, "WRITE", "newkey", "x") == "EACCES"       # the home itself is dom0's
    assert store.call(0, "READ", "/local/domain/1/control/shutdown") == "poweroff"


def test_domu_writes_its_frontend_not_the_backend(store):
    fe, be = xsclient.add_vbd(store, 1, 51712, params="/img")
    store.call(1, "WRITE", f"{fe}/ring-ref", "8")
    store.call(1, "WRITE", f"{fe}/state", "3")
    assert store.call(1, "READ", f"{be}/state") == "1"             # readable, r1
    assert errno_of(store.call, 1, "WRITE", f"{be}/state", "4") == "EACCES"
    assert errno_of(store.call, 2, "READ", f"{fe}/state") == "EACCES"
    assert errno_of(store.call, 2, "READ", f"{be}/state") == "EACCES"


def test_dom0_may_do_everything(store):
    store.call(0, "WRITE", "/local/domain/2/secret", "s")
    store.call(0, "SET_PERMS", "/local/domain/2/secret", ["n2"])
    assert store.call(0, "READ", "/local/domain/2/secret") == "s"
    store.call(0, "RM", "/local/domain/2/secret")
    store.call(0, "SET_PERMS", "/tool", ["n5", "r1"])
    assert store.call(0, "GET_PERMS", "/tool") == ["n5", "r1"]


def test_perm_entries_first_owner_then_acl_then_default(store):
    store.call(0, "WRITE", "/shared", "v")
    store.call(0, "SET_PERMS", "/shared", ["r0", "n1", "w2"])
    assert errno_of(store.call, 1, "READ", "/shared") == "EACCES"            # n1 beats the default r
    assert store.call(3, "READ", "/shared") == "v"                           # the default
    assert errno_of(store.call, 2, "READ", "/shared") == "EACCES"            # w only
    store.call(2, "WRITE", "/shared", "w")
    store.call(0, "SET_PERMS", "/shared", ["n3"])
    assert store.call(3, "READ", "/shared") == "w"                           # the owner gets everything


def test_owner_may_set_perms_but_not_give_the_node_away(store):
    store.call(1, "WRITE", "data/mine", "x")
    store.call(1, "SET_PERMS", "data/mine", ["n1", "r2"])
    assert store.call(2, "READ", "/local/domain/1/data/mine") == "x"
    assert errno_of(store.call, 1, "SET_PERMS", "data/mine", ["n2"]) == "EPERM"
    assert errno_of(store.call, 2, "SET_PERMS", "/local/domain/1/data/mine", ["n2"]) == "EACCES"
    assert errno_of(store.call, 1, "SET_PERMS", "data/mine", ["x1"]) == "EINVAL"


def test_new_nodes_inherit_the_parents_permissions(store):
    store.call(0, "WRITE", "/local/domain/1/a/b/c", "v")
    for p in ("/local/domain/1/a", "/local/domain/1/a/b", "/local/domain/1/a/b/c"):
        assert store.node(p).perms == (("n", 0), ("r", 1))
    assert store.node("/local/domain/1/a").value == ""


def test_privileged_only_requests(store):
    for op, args in (("INTRODUCE", ("5", ["1", "2"])), ("RELEASE", ("1",)),
                     ("IS_DOMAIN_INTRODUCED", ("0",)), ("SET_TARGET", ("1", ["2"]))):
        assert errno_of(store.call, 1, op, *args) == "EACCES"


# --- paths and errors -------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["", "a//b", "/a/", "/a b", "/é", "@special"])
def test_invalid_paths_are_einval(store, path):
    assert errno_of(store.call, 0, "WRITE", path, "x") == "EINVAL"


def test_path_length_limits(store):
    assert errno_of(store.call, 0, "WRITE", "/" + "a" * 3072, "x") == "EINVAL"
    store.call(0, "WRITE", "/" + "a" * 3071, "x")
    # canonicalize(): a domU's path below /local/domain/1/ must stay under
    # XENSTORE_REL_PATH_MAX (2048): reaching it is exceeding it (domain_max_chk, master).
    deep = "data/" + ("c" * 99 + "/") * 20                  # 2005 characters, short components
    assert errno_of(store.call, 1, "WRITE", deep + "d" * 43, "x") == "EINVAL"    # 2048
    store.call(1, "WRITE", deep + "d" * 42, "x")                                 # 2047
    # One 2043-byte name fits the path but not its parent's node (16 + 8 + 2044 >= 2048).
    assert errno_of(store.call, 1, "WRITE", "data/" + "b" * 2040, "x") == "ENOSPC"


def test_relative_paths_resolve_against_the_callers_home(store):
    assert store.call(2, "READ", "domid") == "2"
    assert store.call(0, "GET_DOMAIN_PATH", "7") == "/local/domain/7"


def test_errors_travel_as_names(store):
    t, payload = store.request(1, abi.XS_READ, b"/local/domain/2/name\0")
    assert (t, payload) == (abi.XS_ERROR, b"EACCES\0")
    assert store.request(1, 99, b"") == (abi.XS_ERROR, b"ENOSYS\0")
    assert store.request(1, abi.XS_WATCH_EVENT, b"") == (abi.XS_ERROR, b"ENOSYS\0")
    assert store.request(0, abi.XS_READ, b"/x\0/y\0") == (abi.XS_ERROR, b"EINVAL\0")   # onearg
    assert store.request(0, abi.XS_READ, b"/tool") == (abi.XS_ERROR, b"EINVAL\0")      # no nul
    assert store.request(0, abi.XS_READ, b"/tool\0", tx_id=42) == (abi.XS_ERROR, b"ENOENT\0")


def test_rm_semantics(store):
    store.call(0, "WRITE", "/a/b/c", "1")
    store.call(0, "RM", "/a/b/nonexistent")                 # fine: the parent exists
    assert errno_of(store.call, 0, "RM", "/a/x/y") == "ENOENT"
    assert errno_of(store.call, 0, "RM", "/") == "EINVAL"
    store.call(0, "RM", "/a")
    assert store.node("/a/b/c") is None and store.node("/a/b") is None
    assert "a" not in store.call(0, "DIRECTORY", "/")
    assert store.check() == []


def test_mkdir_keeps_existing_values(store):
    store.call(0, "WRITE", "/m", "v")
    store.call(0, "MKDIR", "/m")
    store.call(0, "MKDIR", "/m/n/o")
    assert store.call(0, "READ", "/m") == "v"
    assert store.call(0, "READ", "/m/n/o") == ""


def test_values_are_binary_safe(store):
    raw = b"a\0b\xff\n"
    t, _ = store.request(0, abi.XS_WRITE, b"/bin\0" + raw)
    assert t == abi.XS_WRITE
    assert store.request(0, abi.XS_READ, b"/bin\0") == (abi.XS_READ, raw)


def test_directory_lists_children_in_creation_order(store):
    for name in ("zeta", "alpha", "mid"):
        store.call(0, "WRITE", f"/order/{name}", "")
    assert store.call(0, "DIRECTORY", "/order") == ["zeta", "alpha", "mid"]


def test_directory_part(store):
    for i in range(3):
        store.call(0, "WRITE", f"/dp/child{i}", "")
    out = store.call(0, "DIRECTORY_PART", "/dp", ["0"])
    gen, rest = out.split(b"\0", 1)
    assert int(gen) == store.node("/dp").gen
    assert rest == b"child0\0child1\0child2\0\0"
    assert store.call(0, "DIRECTORY_PART", "/dp", ["100"]) == gen + b"\0\0"


def test_node_size_and_node_count_quotas_bind_domus(store):
    assert errno_of(store.call, 1, "WRITE", "data/big", "x" * 3000) == "ENOSPC"
    store.call(0, "WRITE", "/local/domain/1/data/big", "x" * 3000)     # not dom0


def test_reply_over_4096_is_e2big(store):
    for i in range(300):
        store.call(0, "WRITE", f"/wide/child-with-a-long-name-{i:04d}", "")
    assert errno_of(store.call, 0, "DIRECTORY", "/wide") == "E2BIG"


# --- watches ------------------------------------------------------------------------------------

def test_watch_fires_once_when_set_then_on_changes_below(store):
    store.call(0, "WATCH", "/local/domain/1/device", "tok")
    assert store.take_events(0) == [("/local/domain/1/device", "tok")]
    store.call(0, "WRITE", "/local/domain/1/device/vbd/1/state", "1")
    assert store.take_events(0) == [("/local/domain/1/device/vbd/1/state", "tok")]
    store.call(0, "WRITE", "/local/domain/1/devicex", "1")          # a sibling, not below
    store.call(0, "WRITE", "/local/domain/1/name", "n")
    assert store.take_events(0) == []


def test_watch_tokens_and_duplicates(store):
    store.call(0, "WATCH", "/w", "a")
    store.call(0, "WATCH", "/w", "b")
    assert errno_of(store.call, 0, "WATCH", "/w", "a") == "EEXIST"
    store.take_events(0)
    store.call(0, "WRITE", "/w", "1")
    assert store.take_events(0) == [("/w", "a"), ("/w", "b")]
    store.call(0, "UNWATCH", "/w", "a")
    assert errno_of(store.call, 0, "UNWATCH", "/w", "a") == "ENOENT"
    store.call(0, "WRITE", "/w", "2")
    assert store.take_events(0) == [("/w", "b")]


def test_relative_watch_gets_relative_events(store):
    store.call(1, "WATCH", "control", "ctl")
    assert store.take_events(1) == [("control", "ctl")]
    store.call(0, "WRITE", "/local/domain/1/control/shutdown", "reboot")
    assert store.take_events(1) == [("control/shutdown", "ctl")]


def test_rm_fires_for_each_removed_node(store):
    store.call(0, "WRITE", "/r/a/b", "1")
    store.call(0, "WATCH", "/r", "top")
    store.call(0, "WATCH", "/r/a/b", "deep")
    store.take_events(0)
    store.call(0, "RM", "/r/a")
    # Children first (an exact match), then the removed node itself (recursive).
    assert store.take_events(0) == [("/r/a/b", "deep"), ("/r/a", "top")]


def test_watch_events_respect_permissions(store):
    store.call(1, "WATCH", "/local/domain/2/data", "spy")
    assert store.take_events(1) == [("/local/domain/2/data", "spy")]     # the first one always fires
    store.call(0, "WRITE", "/local/domain/2/data/secret", "s")
    assert store.take_events(1) == []
    store.call(1, "WATCH", "/local/domain/1/data", "own")
    store.take_events(1)
    store.call(0, "WRITE", "/local/domain/1/data/x", "s")
    assert store.take_events(1) == [("/local/domain/1/data/x", "own")]


def test_special_watches(store):
    store.call(0, "WATCH", "@introduceDomain", "intro")
    store.call(0, "WATCH", "@releaseDomain", "rel")
    store.call(1, "WATCH", "@releaseDomain", "guest")
    assert store.take_events(0) == [("@introduceDomain", "intro"), ("@releaseDomain", "rel")]
    assert store.take_events(1) == [("@releaseDomain", "guest")]
    store.call(0, "INTRODUCE", "3", ["1234", "5"])
    assert store.call(0, "IS_DOMAIN_INTRODUCED", "3") is True
    assert store.take_events(0) == [("@introduceDomain", "intro")]
    store.call(0, "INTRODUCE", "3", ["1234", "5"])                  # again: nothing new
    assert store.take_events(0) == []
    store.call(0, "RELEASE", "3")
    assert store.call(0, "IS_DOMAIN_INTRODUCED", "3") is False
    assert store.take_events(0) == [("@releaseDomain", "rel")]
    assert store.take_events(1) == []                                # n0 on @releaseDomain
    store.call(0, "SET_PERMS", "@releaseDomain", ["n0", "r1"])
    assert store.take_events(1) == [("@releaseDomain", "guest")]     # a permission change is an event
    store.take_events(0)
    store.call(0, "INTRODUCE", "4", ["1", "1"])
    store.domain_shutdown(4)
    store.domain_shutdown(4)                                         # once per shutdown
    assert store.take_events(1) == [("@releaseDomain", "guest")]
    assert errno_of(store.call, 0, "RELEASE", "9") == "ENOENT"
    assert errno_of(store.call, 0, "READ", "@releaseDomain") == "EINVAL"


def test_reset_watches(store):
    store.call(1, "WATCH", "data", "t")
    tx = store.call(1, "TRANSACTION_START")
    store.call(1, "RESET_WATCHES")
    store.take_events(1)
    store.call(0, "WRITE", "/local/domain/1/data/x", "1")
    assert store.take_events(1) == []
    assert errno_of(store.call, 1, "READ", "name", tx=tx) == "ENOENT"


def test_watch_quota(store):
    # do_watch() (tools/xenstored/watch.c): ENOSPC once the count would reach the quota
    # of 128 (domain_quota_add_exceeds: val >= quota), so 127 watches fit; dom0 is exempt.
    for i in range(127):
        store.call(1, "WATCH", "data", f"t{i}")
    assert errno_of(store.call, 1, "WATCH", "data", "one-too-many") == "ENOSPC"
    for i in range(200):
        store.call(0, "WATCH", "/local", f"t{i}")


# --- transactions -----------------------------------------------------------------------------

def test_transaction_commit(store):
    tx = store.call(0, "TRANSACTION_START")
    store.call(0, "WRITE", "/t/a", "1", tx=tx)
    store.call(0, "WRITE", "/t/b", "2", tx=tx)
    assert store.node("/t/a") is None                                # not visible outside yet
    assert store.call(0, "READ", "/t/a", tx=tx) == "1"
    store.call(0, "TRANSACTION_END", None, "T", tx=tx)
    assert store.call(0, "READ", "/t/b") == "2"
    assert store.check() == []


def test_transaction_abort(store):
    tx = store.call(0, "TRANSACTION_START")
    store.call(0, "WRITE", "/t/a", "1", tx=tx)
    store.call(0, "TRANSACTION_END", None, "F", tx=tx)
    assert store.node("/t/a") is None
    assert errno_of(store.call, 0, "TRANSACTION_END", None, "T", tx=tx) == "ENOENT"


def test_conflicting_commit_is_eagain(store):
    store.call(0, "WRITE", "/c/x", "0")
    tx = store.call(0, "TRANSACTION_START")
    assert store.call(0, "READ", "/c/x", tx=tx) == "0"
    store.call(0, "WRITE", "/c/y", "1", tx=tx)
    store.call(0, "WRITE", "/c/x", "changed")                     # someone else, meanwhile
    assert errno_of(store.call, 0, "TRANSACTION_END", None, "T", tx=tx) == "EAGAIN"
    assert store.node("/c/y") is None
    # Nothing touched in common: the commit goes through.
    tx = store.call(0, "TRANSACTION_START")
    store.call(0, "WRITE", "/other", "1", tx=tx)
    store.call(0, "WRITE", "/c/x", "again")
    store.call(0, "TRANSACTION_END", None, "T", tx=tx)


def test_transactions_are_isolated(store):
    store.call(0, "WRITE", "/iso", "before")
    tx = store.call(1, "TRANSACTION_START")
    store.call(0, "WRITE", "/iso", "after")
    store.call(0, "SET_PERMS", "/iso", ["r0"])
    assert errno_of(store.call, 1, "READ", "/iso", tx=tx) == "EACCES"   # the snapshot: still n0
    tx2 = store.call(1, "TRANSACTION_START")
    assert store.call(1, "READ", "/iso", tx=tx2) == "after"
    assert tx2 != tx


def test_two_transactions_creating_siblings_conflict(store):
    t1 = store.call(0, "TRANSACTION_START")
    t2 = store.call(0, "TRANSACTION_START")
    store.call(0, "WRITE", "/sib/a", "1", tx=t1)
    store.call(0, "WRITE", "/sib/b", "1", tx=t2)
    store.call(0, "TRANSACTION_END", None, "T", tx=t1)
    assert errno_of(store.call, 0, "TRANSACTION_END", None, "T", tx=t2) == "EAGAIN"


def test_watches_fire_only_at_commit(store):
    store.call(0, "WATCH", "/tw", "t")
    store.take_events(0)
    tx = store.call(0, "TRANSACTION_START")
    store.call(0, "WRITE", "/tw/a", "1", tx=tx)
    assert store.take_events(0) == []
    store.call(0, "TRANSACTION_END", None, "T", tx=tx)
    assert ("/tw/a", "t") in store.take_events(0)
    tx = store.call(0, "TRANSACTION_START")
    store.call(0, "WRITE", "/tw/b", "1", tx=tx)
    store.call(0, "TRANSACTION_END", None, "F", tx=tx)
    assert store.take_events(0) == []


def test_transaction_misuse(store):
    tx = store.call(1, "TRANSACTION_START")
    assert errno_of(store.call, 1, "TRANSACTION_START", tx=tx) == "EBUSY"
    assert errno_of(store.call, 2, "READ", "name", tx=tx) == "ENOENT"     # not yours
    assert errno_of(store.call, 1, "TRANSACTION_END", None, "X", tx=tx) == "EINVAL"
    assert errno_of(store.call, 1, "TRANSACTION_END", None, "T") == "ENOENT"
    for _ in range(8):                      # 9 open in all: the 10th reaches the quota
        store.call(1, "TRANSACTION_START")
    assert errno_of(store.call, 1, "TRANSACTION_START") == "ENOSPC"   # transaction.c


def test_retrying_transactions(store):
    calls = []

    def body(tx):
        calls.append(tx)
        store.call(0, "READ", "/tool", tx=tx)
        if len(calls) == 1:
            store.call(0, "WRITE", "/tool", "meanwhile")
        store.call(0, "WRITE", "/tool/x", str(len(calls)), tx=tx)
    xsclient.run_transaction(store, body)
    assert len(calls) == 2 and store.call(0, "READ", "/tool/x") == "2"


# --- libxl's paths ---------------------------------------------------------------------------

def test_domain_home_as_libxl_writes_it():
    s = XenStore()
    dom = FakeDom(3, "web", mem_pages=4096, vcpus=2)
    dom.store_evtchn, dom.store_pfn, dom.p2m = 7, 2, [100, 101, 102]
    assert xsclient.write_domain_home(s, dom) == "/local/domain/3"
    home = "/local/domain/3"
    uuid = xsclient.domain_uuid(3, "web")
    assert uuid == xsclient.domain_uuid(3, "web") != xsclient.domain_uuid(4, "web")
    expect = {"name": "web", "domid": "3", "vm": f"/vm/{uuid}", "memory/target": "16384",
              "memory/static-max": "16384", "control/shutdown": "", "store/port": "7",
              "store/ring-ref": "102", "cpu/1/availability": "online"}
    for key, value in expect.items():
        assert s.call(0, "READ", f"{home}/{key}") == value, key
    assert s.call(0, "READ", f"/vm/{uuid}/name") == "web"
    assert s.call(0, "READ", "/libxl/3/type") == "pv"
    assert s.call(0, "GET_PERMS", home) == ["n0", "r3"]
    assert s.call(0, "GET_PERMS", f"{home}/memory/target") == ["n0", "r3"]
    assert s.call(0, "GET_PERMS", f"{home}/control/shutdown") == ["n3"]
    for sub in ("data", "drivers", "feature", "attr", "error", "control/sysrq"):
        assert s.call(0, "GET_PERMS", f"{home}/{sub}") == ["n3"]
    assert s.call(0, "GET_PERMS", "/libxl/3") == ["n0"]
    assert s.call(0, "DIRECTORY", home)[:4] == ["vm", "name", "cpu", "memory"]


def test_hvm_home_has_hvmloader_and_s3():
    s = XenStore()
    xsclient.write_domain_home(s, FakeDom(4, "h", type="hvm"))
    assert s.call(0, "GET_PERMS", "/local/domain/4/hvmloader") == ["n0", "r4"]
    assert s.call(0, "READ", "/local/domain/4/control/feature-s3") == ""
    assert s.call(0, "READ", "/libxl/4/type") == "hvm"


def test_vbd_paths_exactly_as_libxl_writes_them(store):
    fe, be = xsclient.add_vbd(store, 1, 51712, params="/srv/disk.img", mode="w")
    assert (fe, be) == ("/local/domain/1/device/vbd/51712", "/local/domain/0/backend/vbd/1/51712")
    assert store.call(0, "DIRECTORY", fe) == ["backend", "backend-id", "state", "virtual-device",
                                              "device-type", "trusted"]
    assert store.call(0, "DIRECTORY", be) == ["frontend", "params", "frontend-id", "online", "removable",
                                              "bootable", "state", "dev", "type", "mode", "device-type",
                                              "discard-enable"]
    f = {k: store.call(0, "READ", f"{fe}/{k}") for k in store.call(0, "DIRECTORY", fe)}
    b = {k: store.call(0, "READ", f"{be}/{k}") for k in store.call(0, "DIRECTORY", be)}
    assert f == {"backend": be, "backend-id": "0", "state": "1", "virtual-device": "51712",
                 "device-type": "disk", "trusted": "1"}
    assert b == {"frontend": fe, "params": "/srv/disk.img", "frontend-id": "1", "online": "1",
                 "removable": "0", "bootable": "1", "state": "1", "dev": "xvda", "type": "phy", "mode": "w",
                 "device-type": "disk", "discard-enable": "1"}
    assert store.call(0, "GET_PERMS", fe) == ["n1", "r0"]
    assert store.call(0, "GET_PERMS", f"{fe}/state") == ["n1", "r0"]
    assert store.call(0, "GET_PERMS", be) == ["n0", "r1"]
    assert store.call(0, "GET_PERMS", f"{be}/state") == ["n0", "r1"]
    assert store.call(0, "READ", "/libxl/1/device/vbd/51712/backend") == be


def test_vbd_and_vif_are_written_in_one_transaction(store):
    store.call(0, "WATCH", "/local/domain/0/backend", "be")
    store.take_events(0)
    xsclient.add_vbd(store, 2, 51728)
    events = store.take_events(0)
    # Every backend node was created at one commit: one event each, nothing half-written.
    assert ("/local/domain/0/backend/vbd/2/51728/state", "be") in events
    assert all(p.startswith("/local/domain/0/backend/vbd/2") for p, _ in events)


def test_vif_paths(store):
    fe, be = xsclient.add_vif(store, 2, 0, mac="00:16:3e:12:34:56")
    assert (fe, be) == ("/local/domain/2/device/vif/0", "/local/domain/0/backend/vif/2/0")
    assert store.call(0, "DIRECTORY", fe) == ["backend", "backend-id", "state", "handle", "mac", "trusted"]
    assert store.call(0, "DIRECTORY", be) == ["frontend", "frontend-id", "online", "state", "script", "mac",
                                              "bridge", "handle", "type"]
    assert store.call(0, "READ", f"{be}/script") == "/etc/xen/scripts/vif-bridge"
    assert store.call(0, "READ", f"{be}/bridge") == "xenbr0"
    assert store.call(0, "READ", f"{fe}/mac") == "00:16:3e:12:34:56"
    assert store.call(0, "READ", f"{be}/type") == "vif"


def test_devices_from_xl_config_specs(store):
    from lab.dom0.xlcfg import load_config
    cfg = load_config('name="g"\ndisk=["/img/a.img,raw,xvdb,r"]\nvif=["mac=00:16:3e:00:00:07,bridge=br1"]\n')
    fe, be = xsclient.add_disk(store, 1, cfg.disks[0])
    assert be == "/local/domain/0/backend/vbd/1/51728"
    assert store.call(0, "READ", f"{be}/mode") == "r"
    assert store.call(0, "READ", f"{be}/dev") == "xvdb"
    assert store.call(0, "READ", f"{be}/params") == "/img/a.img"
    assert store.call(0, "READ", f"{be}/discard-enable") == "0"
    fe, be = xsclient.add_nic(store, 1, cfg.vifs[0])
    assert store.call(0, "READ", f"{be}/bridge") == "br1"
    assert store.call(0, "READ", f"{fe}/mac") == "00:16:3e:00:00:07"


def test_vbd_names():
    assert xsclient.vbd_name(51712) == "xvda"
    assert xsclient.vbd_name(51728) == "xvdb"
    assert xsclient.vbd_name(51713) == "xvda1"
    assert xsclient.vbd_name(768) == "hda"
    assert xsclient.vbd_name(2048) == "sda"


def test_remove_domain_cleans_up_as_xl_destroy(store):
    xsclient.add_vbd(store, 1, 51712)
    xsclient.add_vbd(store, 2, 51712)
    xsclient.remove_domain(store, 1)
    assert store.node("/local/domain/1") is None
    assert store.node("/libxl/1") is None
    assert store.node("/local/domain/0/backend/vbd/1") is None
    assert store.node("/local/domain/0/backend/vbd/2/51712/state") is not None
    assert not [p for p in store.nodes if p.startswith("/vm/") and "guest1" in store.nodes[p].value]
    assert store.check() == []


# --- the tools ------------------------------------------------------------------------------------

def test_xenstore_ls_format():
    s = XenStore()
    s.call(0, "WRITE", "/local/domain/0/name", "Domain-0")
    s.call(0, "WRITE", "/local/domain/0/domid", "0")
    s.call(0, "WRITE", "/vm/long", "x" * 100)
    s.call(0, "WRITE", "/bin", "tab\there\x01\\")
    out = xsclient.xenstore_ls(s, "/")
    assert out.splitlines() == [
        'tool = ""',
        ' xenstored = ""',
        'local = ""',
        ' domain = ""',
        '  0 = ""',
        '   name = "Domain-0"',
        '   domid = "0"',
        'vm = ""',
        ' long = "' + "x" * 67 + '\\..."',
        'bin = "tab\\there\\001\\\\"',
    ]
    assert xsclient.xenstore_ls(s, "/local/domain/0") == 'name = "Domain-0"\ndomid = "0"\n'


def test_xenstore_ls_perms_and_full_paths():
    s = XenStore()
    s.call(0, "WRITE", "/a/b", "v")
    s.call(0, "SET_PERMS", "/a/b", ["n0", "r1"])
    lines = xsclient.xenstore_ls(s, "/a", show_perms=True).splitlines()
    assert lines[0].startswith('b = "v" ') and lines[0].endswith("  (n0,r1)")
    assert len(lines[0].split("  (")[0]) == 60                     # padded with ". " to column 60
    assert xsclient.xenstore_ls(s, "/a", full_path=True) == '/a/b = "v"\n'


def test_xenstore_ls_errors():
    s = XenStore()
    with pytest.raises(xsclient.XsToolError) as e:
        xsclient.xenstore_ls(s, "/nope")
    assert str(e.value) == "xenstore-ls: xs_directory (/nope): No such file or directory"


def test_xenstore_read_write_rm_list():
    s = XenStore()
    assert xsclient.xenstore_write(s, "/x/y", "1", "/x/z", "a\\tb") == ""
    assert xsclient.xenstore_read(s, "/x/y", "/x/z") == "1\na\\tb\n"
    assert s.call(0, "READ", "/x/z") == "a\tb"
    assert xsclient.xenstore_read(s, "/x/y", prefix=True) == "/x/y: 1\n"
    assert xsclient.xenstore_list(s, "/x") == "y\nz\n"
    assert xsclient.xenstore_list(s, "/x", prefix=True) == "/x/y\n/x/z\n"
    with pytest.raises(xsclient.XsToolError, match="^xenstore-read: couldn't read path /x/q$"):
        xsclient.xenstore_read(s, "/x/q")
    with pytest.raises(xsclient.XsToolError, match="^xenstore-list: could not list path /q$"):
        xsclient.xenstore_list(s, "/q")
    xsclient.xenstore_rm(s, "/x/y")
    assert xsclient.xenstore_exists(s, "/x/z") and not xsclient.xenstore_exists(s, "/x/y")
    xsclient.xenstore_rm(s, "/x/z", tidy=True)
    assert not xsclient.xenstore_exists(s, "/x")
    with pytest.raises(xsclient.XsToolError, match="could not remove path /q/r"):
        xsclient.xenstore_rm(s, "/q/r")
    xsclient.xenstore_chmod(s, "/tool", "n0", "r3")
    assert s.call(3, "READ", "/tool") == ""


def test_sanitise_round_trip():
    raw = "".join(chr(i) for i in range(0, 128)) + "\udcff"
    assert xsclient.unsanitise_value(xsclient.sanitise_value(raw)) == raw
    assert xsclient.sanitise_value("a\nb\x07\x1b") == "a\\nb\\007\\x1b"


def test_encode_request_shapes():
    assert encode_request(abi.XS_WRITE, "/a", "v") == b"/a\0v"
    assert encode_request(abi.XS_WATCH, "/a", "tok") == b"/a\0tok\0"
    assert encode_request(abi.XS_SET_PERMS, "/a", "n0 r1") == b"/a\0n0\0r1\0"
    assert encode_request(abi.XS_TRANSACTION_START) == b"\0"
    assert message_type("read") == message_type("XS_READ") == abi.XS_READ == 2


# --- the permission invariant, from random operations ---------------------------------------------

DOMAINS = (0, 1, 2, 3)
NAMES = ("a", "b", "data", "device", "control")
OPS = ("READ", "WRITE", "MKDIR", "RM", "DIRECTORY", "GET_PERMS", "SET_PERMS", "WATCH",
       "TRANSACTION_START", "TRANSACTION_END")


def _perm_allows(perms, domid: int, bit: str) -> bool:
    """The rule of docs/misc/xenstore.txt, written afresh: owner, then ACL entry, then default."""
    if domid == 0 or perms[0][1] == domid:
        return True
    for letter, who in perms[1:]:
        if who == domid:
            return bit in {"r": "r", "w": "w", "b": "rw", "n": ""}[letter]
    return bit in {"r": "r", "w": "w", "b": "rw", "n": ""}[perms[0][0]]


paths = st.one_of(
    st.builds(lambda d, parts: f"/local/domain/{d}/" + "/".join(parts),
              st.sampled_from((1, 2, 3)), st.lists(st.sampled_from(NAMES), min_size=1, max_size=3)),
    st.builds(lambda parts: "/".join(parts), st.lists(st.sampled_from(NAMES), min_size=1, max_size=3)),
    st.sampled_from(["/", "/local", "/tool", "@releaseDomain", "bad//path", ""]),
)
perm_lists = st.lists(st.builds(lambda l, d: f"{l}{d}", st.sampled_from("nrwb"), st.sampled_from(DOMAINS)),
                      min_size=1, max_size=3)
operations = st.tuples(st.sampled_from(DOMAINS), st.sampled_from(OPS), paths,
                       st.one_of(st.text("xyz", max_size=4), perm_lists), st.booleans())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operations, min_size=1, max_size=40))
def test_no_domu_ever_reads_what_it_may_not(ops):
    s = XenStore()
    for d in (1, 2, 3):
        xsclient.write_domain_home(s, FakeDom(d, f"g{d}"))
    open_tx: dict[int, list[int]] = {}
    for domid, op, path, value, use_tx in ops:
        tx = (open_tx.get(domid) or [0])[-1] if use_tx else 0
        t = message_type(op)
        if op == "SET_PERMS":
            payload = encode_request(t, path, value if isinstance(value, list) else ["n" + str(domid)])
        elif op == "TRANSACTION_END":
            payload = encode_request(t, None, "T" if value else "F")
        elif op in ("WRITE", "WATCH"):
            payload = encode_request(t, path, value if isinstance(value, str) else "v")
        else:
            payload = encode_request(t, None if op == "TRANSACTION_START" else path)
        canon = path if path.startswith(("/", "@")) else f"/local/domain/{domid}/{path}"
        before = s.node(canon, domid, tx) if path and "//" not in path else None
        ancestor = None
        p = canon
        while before is None and ancestor is None and p not in ("/", "") and not p.startswith("@"):
            p = parent_of(p)
            ancestor = s.node(p, domid, tx)
        rtype, reply = s.request(domid, t, payload, tx)          # never raises
        assert rtype in (t, abi.XS_ERROR)
        if rtype == abi.XS_ERROR:
            assert reply.rstrip(b"\0").decode() in ("EINVAL", "EACCES", "EEXIST", "ENOENT", "ENOSPC", "EAGAIN",
                                                    "EBUSY", "E2BIG", "EPERM")
            continue
        if domid and op in ("READ", "DIRECTORY", "GET_PERMS"):
            assert before is not None and _perm_allows(before.perms, domid, "r"), (op, canon, before)
        if domid and op in ("WRITE", "MKDIR", "RM", "SET_PERMS") and before is not None:
            assert _perm_allows(before.perms, domid, "w"), (op, canon, before)
        if domid and op in ("WRITE", "MKDIR") and before is None:
            assert ancestor is not None and _perm_allows(ancestor.perms, domid, "w"), (op, canon, ancestor)
        if op == "TRANSACTION_START":
            open_tx.setdefault(domid, []).append(int(reply.rstrip(b"\0")))
        if op == "TRANSACTION_END" and tx:
            open_tx[domid].remove(tx)
        s.take_events(domid)
    assert s.check() == []


# --- held against cxenstored (Xen master, tools/xenstored/) ------------------------------------

def test_node_size_quota_binds_the_parent_whose_children_grow(store):
    # create_node() writes the existing parent too, and write_node_raw() checks its size:
    # header 16 + one permission 8 + value 0 + child names with their nuls, below 2048.
    store.call(1, "MKDIR", "data/dir")
    n = 0
    while True:
        try:
            store.call(1, "WRITE", f"data/dir/k{n:03d}", "")
        except XenStoreError as e:
            assert e.errno == "ENOSPC"
            break
        n += 1
    parent = store.node("/local/domain/1/data/dir")
    assert n == (2047 - 16 - 8 * len(parent.perms)) // 5       # 5 bytes per "kNNN\0"
    assert parent.size() < 2048 <= parent.size() + 5
    assert store.node(f"/local/domain/1/data/dir/k{n:03d}") is None        # nothing half-made
    store.call(0, "WRITE", f"/local/domain/1/data/dir/k{n:03d}", "")      # dom0 is exempt


def test_node_count_quota_reaches_at_999(store):
    for d in range(4):
        store.call(1, "MKDIR", f"data/n{d}")
    owned = sum(1 for node in store.nodes.values() if node.owner == 1)
    for i in range(999 - owned):
        store.call(1, "WRITE", f"data/n{i // 300}/{i}", "")
    assert errno_of(store.call, 1, "WRITE", "data/one-more", "") == "ENOSPC"


def test_set_perms_names_domains_that_exist():
    # domain_alloc_permrefs(): an owner that is no domain is ENOENT (a domid above 65535
    # too); a later entry for one is kept (GET_PERMS shows it) but grants nothing.
    s = XenStore(domain_exists=lambda d: d in (0, 1, 2))
    s.call(0, "WRITE", "/t", "v")
    assert errno_of(s.call, 0, "SET_PERMS", "/t", ["n7"]) == "ENOENT"
    assert errno_of(s.call, 0, "SET_PERMS", "/t", ["n65537", "r1"]) == "ENOENT"
    assert errno_of(s.call, 0, "SET_PERMS", "/t", ["q1"]) == "EINVAL"
    s.call(0, "SET_PERMS", "/t", ["n0", "r7", "r0x1"])            # strtol(…, 0): 0x1 is domain 1
    assert s.call(0, "GET_PERMS", "/t") == ["n0", "r7", "r1"]
    assert s.call(1, "READ", "/t") == "v"
    s.call(0, "SET_PERMS", "/t", ["n0", "r1", "r2", "r1", "r2", "r1"])      # dom0 is exempt
    s.call(0, "SET_PERMS", "/t", ["n1"])
    assert errno_of(s.call, 1, "SET_PERMS", "/t", ["n1", "r0", "r2", "r0", "r2"]) == "ENOSPC"  # 5 reach the quota


def test_introduce_again_rebinds_and_answers_ok(store):
    # do_introduce(): an introduced domain (dom0 too) is re-bound and its connection
    # reset: OK, no second @introduceDomain, its watches and transactions gone.
    store.call(0, "INTRODUCE", "3", ["1234", "5"])
    store.call(0, "WATCH", "@introduceDomain", "intro")
    store.take_events(0)
    store.call(3, "WATCH", "/local/domain/3", "mine")
    assert store.call(0, "INTRODUCE", "3", ["1234", "9"]) == "OK"
    assert store.introduced[3][1] == 9
    assert store.take_events(0) == []
    assert not [w for w in store.watches if w.domid == 3]
    assert store.call(0, "INTRODUCE", "0", ["0", "1"]) == "OK"
    assert errno_of(store.call, 0, "INTRODUCE", "3", ["1234", "0"]) == "EINVAL"      # port <= 0


def test_directory_part_reads_its_offset_with_atoi(store):
    # send_directory_part(): off = atoi(...); "1x" is 1, "x" is 0, "-1" is past the end.
    for name in ("ab", "cd"):
        store.call(0, "WRITE", f"/dq/{name}", "")
    gen = f"{store.node('/dq').gen}".encode() + b"\0"
    assert store.call(0, "DIRECTORY_PART", "/dq", ["3x"]) == gen + b"cd\0\0"
    assert store.call(0, "DIRECTORY_PART", "/dq", ["junk"]) == gen + b"ab\0cd\0\0"
    assert store.call(0, "DIRECTORY_PART", "/dq", ["1"]) == gen + b"b\0cd\0\0"
    assert store.call(0, "DIRECTORY_PART", "/dq", ["-1"]) == gen + b"\0"
