"""The cycle cost table (``machines/costs.toml``)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .. import sources
from ..paths import MACHINES

DEFAULT_PATH = MACHINES / "costs.toml"


class CostError(Exception):
    pass


@dataclass
class Costs:
    STATE_CONSTANT = True       # configuration: snapshots keep it by identity
    instruction: dict[str, int] = field(default_factory=dict)
    event: dict[str, int] = field(default_factory=dict)
    a64: dict[str, int] = field(default_factory=dict)     # the Arm host's cores, by A64 operation
    source: str = ""

    def of_mnemonic(self, name: str) -> int:
        return self.instruction.get(name, self.instruction.get("default", 1))

    def ev(self, name: str) -> int:
        return self.event.get(name, 0)


def load_costs(path: Path | str | None = None) -> Costs:
    p = Path(path) if path else DEFAULT_PATH
    try:
        data = tomllib.loads(sources.read_text(p))
    except FileNotFoundError:
        raise CostError(f"{p}: no such cost table") from None
    except tomllib.TOMLDecodeError as e:
        raise CostError(f"{p}: {e}") from None
    costs = Costs(source=str(p))
    for table in ("instruction", "event", "a64"):
        for key, value in data.get(table, {}).items():
            if not isinstance(value, int) or value < 0:
                raise CostError(f"{p}: [{table}] {key} must be a whole number of cycles, not {value!r}")
            getattr(costs, table)[key] = value
    return costs
