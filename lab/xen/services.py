"""dom0's services, as Xen and its domain builder reach them: by role, with declared interfaces.

The services are dom0's (``lab/dom0``: xenstored, xenconsoled, the device model,
the bridge, the xenbus backends), so this layer names only what it calls on
them. Each registers itself with ``Dom0Services.add`` when dom0 starts it; the
host tells every one of them, in the order they started, when a domain shuts
down and when it is gone.
"""

from __future__ import annotations

from typing import Any, Protocol


class Dom0Service(Protocol):
    name: str

    def domain_shutdown(self, dom: Any) -> None:
        """The domain shut down or crashed: it runs no more, its resources are still there."""

    def domain_gone(self, dom: Any) -> None:
        """The domain was destroyed: forget it, release what was held for it."""


class Xenstore(Dom0Service, Protocol):
    def connect(self, dom: Any, pfn: int) -> tuple[int, int]:
        """Introduce a new domain with its store ring page: (the page, the guest's event channel port)."""

    def dom0_request(self, op: str | int, path: str | None = None, value: Any = None, tx: int = 0) -> Any:
        """A request from dom0's own tools (as over xenstored's socket)."""


class ConsoleBackend(Dom0Service, Protocol):
    def connect(self, dom: Any) -> int:
        """Serve a new domain's console ring: the guest's event channel port."""


class DeviceModel(Dom0Service, Protocol):
    def claims(self, dom: Any, port: int) -> bool: ...

    def port_io(self, v: Any, port: int, size: int, direction: str, value: int | None) -> Any: ...

    def claims_mmio(self, dom: Any, gpa: int) -> bool: ...

    def mmio_io(self, v: Any, gpa: int, size: int, direction: str, value: int) -> int | None: ...


#: The roles Xen or the builder call by name; any other service is a backend, found by its name.
ROLES = ("xenstored", "xenconsoled", "device_model", "bridge")


class Dom0Services:
    """The services dom0 runs, by role; a backend by its name (the xenbus device type it serves)."""

    def __init__(self) -> None:
        self.xenstored: Xenstore | None = None
        self.xenconsoled: ConsoleBackend | None = None
        self.device_model: DeviceModel | None = None
        self.bridge: Dom0Service | None = None
        #: the xenbus backends (blkback, netback...) by name
        self.backends: dict[str, Dom0Service] = {}
        self._started: dict[str, Dom0Service] = {}     # every service, in the order they started

    def add(self, svc: Any) -> None:
        """Register ``svc`` under its ``name`` (a role, or a backend's name); a second one replaces the first."""
        name = svc.name
        if name in ROLES:
            setattr(self, name, svc)
        else:
            self.backends[name] = svc
        self._started[name] = svc

    def in_start_order(self) -> list[Dom0Service]:
        return list(self._started.values())
