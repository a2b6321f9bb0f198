"""Word masks every layer uses: one home, so no module spells them again."""

from __future__ import annotations

M8 = (1 << 8) - 1
M16 = (1 << 16) - 1
M32 = (1 << 32) - 1
M64 = (1 << 64) - 1
