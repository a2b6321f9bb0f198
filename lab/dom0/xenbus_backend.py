"""What every PV backend in dom0 shares: the xenbus side of a split driver.

Linux's xenbus backend bus (``drivers/xen/xenbus/xenbus_probe_backend.c``)
watches ``backend/<type>`` in dom0's home; when a device directory appears
there whose ``state`` is still Initialising (1) it "probes" the device: the
driver publishes its features and moves to InitWait (2). It then watches the
frontend's ``state`` node and hands each change to the driver
(``otherend_changed``), which connects when the frontend is ready and
disconnects when it closes. A directory that disappears (``xl destroy``
removes it) means the device is gone.

The lab's backends are dom0 services in Python. Every xenstore access goes
through xenstored as dom0 (traced, costed), every grant map and event-channel
operation through Xen's hypercall path as dom0 (:func:`hypercall`), and the
work runs on dom0's vCPU as dom0 work items. Nothing a frontend writes, in
xenstore or in a shared page, may raise out of a backend: every failure is a
line in dom0's log (:meth:`XenbusBackend.log`) and, where Linux does so,
``xenbus_dev_fatal``: an ``error`` node and the backend in Closing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

from ..isa.bits import M32
from ..xen import abi
from .xenstore import XenStoreError


# XenbusState (public/io/xenbus.h)
UNKNOWN, INITIALISING, INITWAIT, INITIALISED, CONNECTED, CLOSING, CLOSED = 0, 1, 2, 3, 4, 5, 6
XENBUS_STATES = {0: "Unknown", 1: "Initialising", 2: "InitWait", 3: "Initialised", 4: "Connected",
                 5: "Closing", 6: "Closed", 7: "Reconfiguring", 8: "Reconfigured"}


# ---------------------------------------------------------------------------------------------------
# The shared ring header (public/io/ring.h)
# ---------------------------------------------------------------------------------------------------

REQ_PROD, REQ_EVENT, RSP_PROD, RSP_EVENT = 0, 4, 8, 12
RING_HEADER = 64


def ring_size(entry_size: int, page: int = 4096) -> int:
    """__RING_SIZE: the entries that fit after the 64-byte header, rounded down to a power of 2."""
    n = (page - RING_HEADER) // entry_size
    size = 1
    while size * 2 <= n:
        size *= 2
    return size


class BackRing:
    """The backend's view of one shared ring page (BACK_RING_INIT): ``req_cons`` and
    ``rsp_prod_pvt`` are private; the shared indexes are read from the page every time.

    ``page`` is the grant mapping's held frame (``lab.xen.frames.HeldFrame``): the
    backend reads and writes the ring only through it, so only while it is mapped."""

    def __init__(self, page, entry_size: int) -> None:
        self.page = page
        self.entry_size = entry_size
        self.size = ring_size(entry_size)
        self.req_cons = 0
        self.rsp_prod_pvt = 0

    @property
    def maddr(self) -> int:
        return self.page.maddr

    def u32(self, off: int) -> int:
        return int.from_bytes(self.page.read(off, 4), "little")

    def set_u32(self, off: int, value: int) -> None:
        self.page.write(off, (value & M32).to_bytes(4, "little"))

    @property
    def req_prod(self) -> int:
        return self.u32(REQ_PROD)

    @property
    def rsp_prod(self) -> int:
        return self.u32(RSP_PROD)

    def entry(self, idx: int) -> bytes:
        """A private copy of slot ``idx`` (checks are made on the copy, never on the shared page)."""
        return self.page.read(RING_HEADER + (idx % self.size) * self.entry_size, self.entry_size)

    def put(self, idx: int, data: bytes, at: int = 0) -> None:
        """Write ``data`` into slot ``idx`` from byte ``at`` of the slot."""
        self.page.write(RING_HEADER + (idx % self.size) * self.entry_size + at, data[:self.entry_size - at])

    def request_prod_overflow(self, prod: int) -> bool:
        """RING_REQUEST_PROD_OVERFLOW: the frontend claims more requests than the ring holds."""
        return (prod - self.rsp_prod_pvt) & M32 > self.size

    def request_cons_overflow(self, cons: int) -> bool:
        """RING_REQUEST_CONS_OVERFLOW: consuming ``cons`` would overrun responses not yet made."""
        return (cons - self.rsp_prod_pvt) & M32 >= self.size

    def unconsumed_requests(self) -> int:
        """RING_HAS_UNCONSUMED_REQUESTS."""
        req = (self.req_prod - self.req_cons) & M32
        rsp = self.size - ((self.req_cons - self.rsp_prod_pvt) & M32)
        return min(req, rsp)

    def push_responses(self) -> bool:
        """RING_PUSH_RESPONSES_AND_CHECK_NOTIFY: publish rsp_prod; does the frontend want an event?"""
        old = self.rsp_prod
        new = self.rsp_prod_pvt & M32
        self.set_u32(RSP_PROD, new)
        return (new - self.u32(RSP_EVENT)) & M32 < (new - old) & M32

    def final_check_for_requests(self) -> bool:
        """RING_FINAL_CHECK_FOR_REQUESTS: set req_event = req_cons + 1, then look once more."""
        if self.unconsumed_requests():
            return True
        self.set_u32(REQ_EVENT, self.req_cons + 1)
        return bool(self.unconsumed_requests())


# ---------------------------------------------------------------------------------------------------
# Devices and the driver base
# ---------------------------------------------------------------------------------------------------

@dataclass
class BackendDevice:
    """One xenbus device as the backend sees it (struct xenbus_device)."""
    kind: str
    domid: int                       # the frontend's domain (otherend_id)
    devid: int
    nodename: str                    # the backend directory
    otherend: str                    # the frontend directory
    state: int = INITIALISING        # the backend's own state
    removed: bool = False
    watch_token: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, int]:
        return (self.domid, self.devid)


def dom0_vcpu(host):
    dom0 = host.domains.get(0)
    return dom0.vcpus[0] if dom0 is not None and dom0.vcpus else None


def charge_dom0(host, cycles: int) -> None:
    """Time for dom0's work, on the pCPU dom0 runs on (as xenstored charges its requests)."""
    v = dom0_vcpu(host)
    if v is None or cycles <= 0:
        return
    p = v.pcpu if v.pcpu is not None else 0
    host.clock[p] += cycles
    v.run_cycles += cycles


def hypercall(host, name: str, args: list, fn: Callable[[], Any]) -> Any:
    """A hypercall made by a backend: Xen's checks and trace event for dom0, then ``fn``."""
    from ..xen.hypercall_table import dispatch_python
    v = dom0_vcpu(host)
    return dispatch_python(host, v, abi.hypercall_nr(name), args, fn)


def ring_event(host, domid: int, **data: Any) -> None:
    """A ``ring_io`` event: done by dom0 (its pCPU and time), about the frontend ``domid``'s ring,
    so the guest's ring traffic is counted with the guest."""
    v = dom0_vcpu(host)
    p = v.pcpu if v is not None and v.pcpu is not None else 0
    host.trace.emit(host.clock[p], p, domid, 0, "ring_io", **data)


def grant_tables(host):
    return host.grant_tables


class XenbusBackend(ABC):
    """A backend driver: probes devices of one type and follows their frontends.

    Subclasses set ``kind`` and ``name`` and implement :meth:`probe`,
    :meth:`frontend_changed` and :meth:`disconnect`.
    """

    kind = "vbd"
    name = "backend"
    log_prefix = "xen-backend"

    def __init__(self, host) -> None:
        self.host = host
        self.devices: dict[tuple[int, int], BackendDevice] = {}
        self.log_lines: list[str] = []
        self.base = f"/local/domain/0/backend/{self.kind}"
        self._token = f"{self.name}:backend/{self.kind}"

    @classmethod
    def install(cls, host, **kwargs: Any) -> "XenbusBackend":
        """Create the service, register it among dom0's services and start watching."""
        svc = cls(host, **kwargs)
        host.services.add(svc)
        svc.start()
        return svc

    # -- plumbing ------------------------------------------------------------------------
    @property
    def xs(self):
        return self.host.services.xenstored

    def start(self) -> None:
        if self.xs is None:
            self.log(f"no xenstored: not watching {self.base}")
            return
        self.xs.watch(self.base, self._token, self._backend_event)

    def log(self, text: str) -> None:
        """A line of dom0's kernel log, as the driver would printk it."""
        line = f"{self.log_prefix}: {text}"
        self.log_lines.append(line)
        dom0 = self.host.domains.get(0)
        if dom0 is not None:
            from ..xen.console import guest_console_write
            guest_console_write(self.host, dom0, line + "\n")

    def read(self, path: str) -> str | None:
        """xenbus_read: the value, or None when the node is missing (or unreadable)."""
        try:
            return self.xs.dom0_request("READ", path)
        except XenStoreError:
            return None

    def read_int(self, path: str) -> int | None:
        """xenbus_scanf "%u"/"%d": the leading integer of the value, or None."""
        value = self.read(path)
        if value is None:
            return None
        text = value.strip(" \t\n\v\f\r")
        digits = 0
        # ASCII digits only, as scanf reads them (Python's int() would take "\u0663" as 3)
        while digits < len(text) and (text[digits] in "0123456789" or (digits == 0 and text[0] in "+-")):
            digits += 1
        try:
            return int(text[:digits], 10)
        except ValueError:
            return None

    def write(self, path: str, value: Any, tx: int = 0) -> bool:
        try:
            self.xs.dom0_request("WRITE", path, str(value), tx=tx)
            return True
        except XenStoreError as e:
            self.log(f"writing {path}: {e.errno}")
            return False

    def write_all(self, dev: BackendDevice, entries: list[tuple[str, Any]]) -> None:
        """Several nodes of the backend directory in one transaction (retried on EAGAIN)."""
        for _ in range(8):
            try:
                tx = self.xs.dom0_request("TRANSACTION_START")
            except XenStoreError as e:
                self.log(f"{dev.nodename}: starting transaction: {e.errno}")
                return
            for key, value in entries:
                self.write(f"{dev.nodename}/{key}", value, tx)
            try:
                self.xs.dom0_request("TRANSACTION_END", value="T", tx=tx)
                return
            except XenStoreError as e:
                if e.errno != "EAGAIN":
                    self.log(f"{dev.nodename}: ending transaction: {e.errno}")
                    return

    def switch_state(self, dev: BackendDevice, state: int) -> None:
        """xenbus_switch_state: write our ``state`` node (nothing to do if it is already that)."""
        if dev.state == state or dev.removed:
            return
        dev.state = state
        self.write(f"{dev.nodename}/state", int(state))

    def fatal(self, dev: BackendDevice, err: int, text: str) -> None:
        """xenbus_dev_fatal: log, write ``error/backend/<type>/<D>/<devid>/error`` in dom0's home, go to Closing."""
        self.log(f"{dev.nodename}: {err} {text}")
        relative = dev.nodename[len("/local/domain/0/"):]          # the device's nodename, as xenbus names it
        self.write(f"/local/domain/0/error/{relative}/error", f"{err} {text}")
        self.switch_state(dev, CLOSING)

    # -- the backend directory's watch ------------------------------------------------------
    def _backend_event(self, path: str, token: str) -> int:
        """xenbus_dev_changed: a node under backend/<kind> changed."""
        if path != self.base and not path.startswith(self.base + "/"):
            return 0
        parts = path[len(self.base):].strip("/").split("/") if path != self.base else []
        if len(parts) < 2:
            # The type or a frontend domain's directory: scan what is there, check what we know.
            self._check_gone(path)
            self._scan(parts[0] if parts else None)
            return 0
        key = self._key(parts[0], parts[1])
        if key is None:
            return 0
        dev = self.devices.get(key)
        if dev is not None:
            if len(parts) == 2:
                self._check_gone(path)
            return 0
        self._maybe_probe(*key)
        return 0

    @staticmethod
    def _key(domid: str, devid: str) -> tuple[int, int] | None:
        if not (domid.isdigit() and devid.isdigit()):
            return None
        return int(domid), int(devid)

    def _scan(self, only_domid: str | None) -> None:
        try:
            domids = [only_domid] if only_domid is not None else self.xs.dom0_request("DIRECTORY", self.base)
        except XenStoreError:
            return
        for d in domids:
            try:
                devids = self.xs.dom0_request("DIRECTORY", f"{self.base}/{d}")
            except XenStoreError:
                continue
            for n in devids:
                key = self._key(d, n)
                if key is not None and key not in self.devices:
                    self._maybe_probe(*key)

    def _check_gone(self, path: str) -> None:
        """Devices whose directory was at or under ``path`` and no longer exists are removed."""
        for key in sorted(self.devices):
            dev = self.devices[key]
            if dev.nodename == path or dev.nodename.startswith(path.rstrip("/") + "/"):
                if self.read(dev.nodename) is None:
                    self.remove(dev, "backend directory removed")

    def _maybe_probe(self, domid: int, devid: int) -> None:
        """xenbus_probe_node: only a device whose backend state is still Initialising is new."""
        nodename = f"{self.base}/{domid}/{devid}"
        if self.read_int(f"{nodename}/state") != INITIALISING:
            return
        otherend = self.read(f"{nodename}/frontend")
        otherend_id = self.read_int(f"{nodename}/frontend-id")
        if not otherend or otherend_id != domid:
            self.log(f"{nodename}: missing or inconsistent frontend/frontend-id; not probed")
            return
        dom = self.host.domains.get(domid)
        if dom is None or not dom.alive:
            return
        dev = BackendDevice(self.kind, domid, devid, nodename, otherend)
        self.devices[dev.key] = dev
        try:
            ok = self.probe(dev)
        except Exception as e:          # a bug here must not take dom0 down
            self.log(f"{nodename}: probe failed: {type(e).__name__}: {e}")
            ok = False
        if not ok:
            dev.removed = True
            self.devices.pop(dev.key, None)
            return
        dev.watch_token = f"{self.name}:{domid}/{devid}:otherend"
        try:
            self.xs.watch(f"{otherend}/state", dev.watch_token, lambda p, t, dev=dev: self._otherend_event(dev))
        except XenStoreError as e:
            self.log(f"{nodename}: cannot watch {otherend}/state: {e.errno}")

    def _otherend_event(self, dev: BackendDevice) -> int:
        """xenbus_otherend_changed: read the frontend's state and let the driver react."""
        if dev.removed or self.devices.get(dev.key) is not dev:
            return 0
        state = self.read_int(f"{dev.otherend}/state")
        if state is None:
            state = UNKNOWN
        try:
            self.frontend_changed(dev, state)
        except Exception as e:          # a frontend must never crash dom0
            self.log(f"{dev.nodename}: internal error handling frontend state {state}: {type(e).__name__}: {e}")
        return 0

    def remove(self, dev: BackendDevice, why: str) -> None:
        """device_unregister: disconnect and forget the device (its nodes are left alone)."""
        if dev.removed:
            return
        try:
            self.disconnect(dev)
        except Exception as e:
            self.log(f"{dev.nodename}: internal error disconnecting: {type(e).__name__}: {e}")
        dev.removed = True
        self.devices.pop(dev.key, None)
        if dev.watch_token and self.xs is not None:
            try:
                self.xs.unwatch(f"{dev.otherend}/state", dev.watch_token)
            except XenStoreError:
                pass

    # -- domain life cycle --------------------------------------------------------------------
    def domain_shutdown(self, dom) -> None:
        """A shut-down frontend's devices stay connected until the domain is destroyed."""

    def domain_gone(self, dom) -> None:
        for key in sorted(self.devices):
            dev = self.devices.get(key)
            if dev is not None and dev.domid == dom.domid:
                self.remove(dev, "domain destroyed")

    # -- what the learner's io view reads ------------------------------------------------
    def rings_of(self, dev: BackendDevice) -> list[tuple[str, "BackRing | None"]]:
        """(label, ring) of each shared ring the device has mapped; subclasses say."""
        return []

    def ring_pages(self, domid: int) -> list[tuple[str, int, int, str]]:
        """(label, machine frame of the ring page, req_cons, backend state) for ``domid``'s rings."""
        out = []
        for key in sorted(self.devices):
            dev = self.devices[key]
            if dev.domid != domid or dev.removed:
                continue
            for label, ring in self.rings_of(dev):
                if ring is not None:
                    out.append((label, ring.maddr >> 12, ring.req_cons, f"backend {XENBUS_STATES[dev.state]}"))
        return out

    # -- what a driver provides ---------------------------------------------------------------
    @abstractmethod
    def probe(self, dev: BackendDevice) -> bool:
        """A new device: open what backs it, publish its features; False refuses it."""

    @abstractmethod
    def frontend_changed(self, dev: BackendDevice, state: int) -> None:
        """The frontend moved to XenbusState ``state``: connect, close or wait."""

    @abstractmethod
    def disconnect(self, dev: BackendDevice) -> None:
        """Unmap the rings and close the port (the device is going or the frontend closed)."""

    # -- helpers for drivers ---------------------------------------------------------------------
    def map_grant(self, domid: int, ref: int, readonly: bool) -> tuple[int, int, Any]:
        """GNTTABOP_map_grant_ref of one grant: (status, handle, the mapped page or None)."""
        return self.map_grants(domid, [(ref, readonly)])[0]

    def map_grants(self, domid: int, refs: list[tuple[int, bool]]) -> list[tuple[int, int, Any]]:
        """One GNTTABOP_map_grant_ref hypercall for several (ref, readonly) pairs: (status,
        handle, page) each, the page being the mapping's held frame, valid until unmapped."""
        gt = grant_tables(self.host)
        v = dom0_vcpu(self.host)
        out: list[tuple[int, int, Any]] = []

        def run() -> int:
            for ref, ro in refs:
                st, handle, _bus = gt.map_for_service(v, domid, ref, ro)
                out.append((st, handle, gt.frame_of(0, handle) if st == 0 else None))
            return 0
        hypercall(self.host, "grant_table_op", ["map_grant_ref", f"{len(refs)} op(s)"], run)
        return out

    def unmap_grants(self, handles: list[int]) -> None:
        if not handles:
            return
        gt = grant_tables(self.host)
        v = dom0_vcpu(self.host)
        hypercall(self.host, "grant_table_op", ["unmap_grant_ref", f"{len(handles)} op(s)"],
                  lambda: [gt.unmap_for_service(v, h) for h in handles] and 0)

    def bind_interdomain(self, domid: int, remote_port: int, handler: Callable[[int], Any]) -> int:
        """EVTCHNOP_bind_interdomain for dom0 and attach ``handler``; the local port or -errno."""
        ev = self.host.evtchn
        out: list[int] = []
        hypercall(self.host, "event_channel_op", ["bind_interdomain", f"d{domid}:{remote_port}"],
                  lambda: out.append(ev.bind_interdomain(0, domid, remote_port)) or 0)
        port = out[0]
        if port > 0:
            def on_event(p: int, _serve=handler) -> Any:
                return _serve(p)
            on_event.service_name = self.name      # type: ignore[attr-defined]  # named in the io view
            ev.bind_service(0, port, on_event)
        return port

    def notify(self, port: int) -> None:
        """EVTCHNOP_send from dom0 (notify_remote_via_irq)."""
        v = dom0_vcpu(self.host)
        if v is not None:
            self.host.charge(v, "event_channel_send")
        hypercall(self.host, "event_channel_op", ["send", f"port {port}"],
                  lambda: self.host.evtchn.send(0, port) or 0)

    def close_port(self, port: int) -> None:
        if port <= 0:
            return
        hypercall(self.host, "event_channel_op", ["close", f"port {port}"],
                  lambda: self.host.evtchn.close(0, port) or 0)
