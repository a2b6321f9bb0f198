"""x86 arithmetic flags, computed lazily.

Most flag results are never read (the next instruction overwrites them), so
the CPU records *how* the flags were produced -- the operation, its operands
and its result -- and computes the bits only when something reads them. This
module holds that computation and the condition-code tests.
"""

from __future__ import annotations

CF, PF, AF, ZF, SF, TF, IF, DF, OF = 1 << 0, 1 << 2, 1 << 4, 1 << 6, 1 << 7, 1 << 8, 1 << 9, 1 << 10, 1 << 11
IOPL_SHIFT = 12
IOPL_MASK = 3 << IOPL_SHIFT
ARITH = CF | PF | AF | ZF | SF | OF
#: Bit 1 of rflags always reads as 1.
FIXED = 1 << 1

FLAG_NAMES = ((CF, "CF"), (PF, "PF"), (AF, "AF"), (ZF, "ZF"), (SF, "SF"), (TF, "TF"),
              (IF, "IF"), (DF, "DF"), (OF, "OF"))

# Lazy flag kinds.
K_ADD, K_SUB, K_LOGIC, K_INC, K_DEC, K_NEG, K_SHL, K_SHR, K_SAR, K_ROL, K_ROR, K_MUL, K_ADC, K_SBB = range(14)

_PARITY = bytes(0 if bin(i).count("1") & 1 else 1 for i in range(256))

MASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFF_FFFF, 8: 0xFFFF_FFFF_FFFF_FFFF}
SIGN = {1: 0x80, 2: 0x8000, 4: 0x8000_0000, 8: 0x8000_0000_0000_0000}


def _szp(res: int, size: int) -> int:
    f = PF if _PARITY[res & 0xFF] else 0
    if res == 0:
        f |= ZF
    if res & SIGN[size]:
        f |= SF
    return f


def compute(kind: int, res: int, a: int, b: int, size: int) -> int:
    """The CF/PF/AF/ZF/SF/OF bits of a lazily recorded operation.

    ``a`` and ``b`` are the operands (masked to ``size``); ``res`` the
    masked result. For INC/DEC ``b`` carries the CF from before, which they
    leave unchanged. For shifts and rotates ``b`` is the (masked, non-zero)
    count and ``a`` the value shifted. For MUL ``b`` is 1 when the high half
    was significant. For ADC/SBB the carry-in is folded into ``b``'s low bit
    by the caller as ``b | cin << 64``.
    """
    sign = SIGN[size]
    if kind == K_SUB:
        f = _szp(res, size)
        if a < b:
            f |= CF
        if (a ^ b ^ res) & 0x10:
            f |= AF
        if (a ^ b) & (a ^ res) & sign:
            f |= OF
        return f
    if kind == K_ADD:
        f = _szp(res, size)
        if res < a:
            f |= CF
        if (a ^ b ^ res) & 0x10:
            f |= AF
        if ~(a ^ b) & (a ^ res) & sign:
            f |= OF
        return f
    if kind == K_LOGIC:
        return _szp(res, size)
    if kind == K_INC:
        f = _szp(res, size) | (CF if b else 0)
        if (a ^ 1 ^ res) & 0x10:
            f |= AF
        if res == sign:
            f |= OF
        return f
    if kind == K_DEC:
        f = _szp(res, size) | (CF if b else 0)
        if (a ^ 1 ^ res) & 0x10:
            f |= AF
        if res == sign - 1:
            f |= OF
        return f
    if kind == K_NEG:
        f = _szp(res, size)
        if a != 0:
            f |= CF
        if (a ^ res) & 0x10:
            f |= AF
        if res == sign and a == sign:
            f |= OF
        return f
    if kind == K_SHL:
        bits = size * 8
        f = _szp(res, size)
        if b <= bits and (a >> (bits - b)) & 1:
            f |= CF
        if b == 1 and bool(res & sign) != bool(f & CF):
            f |= OF
        return f
    if kind == K_SHR:
        f = _szp(res, size)
        if (a >> (b - 1)) & 1:
            f |= CF
        if b == 1 and a & sign:
            f |= OF
        return f
    if kind == K_SAR:
        f = _szp(res, size)
        sa = a - (sign << 1) if a & sign else a
        if (sa >> (b - 1)) & 1:
            f |= CF
        return f
    if kind in (K_ROL, K_ROR):
        # Rotates change only CF and OF; the others come from before (kept in
        # ``a``'s slot by the caller as the previous flags).
        prev = a
        f = prev & ~(CF | OF)
        if kind == K_ROL:
            if res & 1:
                f |= CF
            if b == 1 and bool(res & sign) != bool(res & 1):
                f |= OF
        else:
            if res & sign:
                f |= CF
            if b == 1 and bool(res & sign) != bool(res & (sign >> 1)):
                f |= OF
        return f
    if kind == K_MUL:
        f = _szp(res, size)
        if b:
            f |= CF | OF
        return f
    if kind == K_ADC:
        cin = b >> 64
        b &= MASK[size]
        f = _szp(res, size)
        if a + b + cin > MASK[size]:
            f |= CF
        if (a ^ b ^ res) & 0x10:
            f |= AF
        if ~(a ^ b) & (a ^ res) & sign:
            f |= OF
        return f
    if kind == K_SBB:
        cin = b >> 64
        b &= MASK[size]
        f = _szp(res, size)
        if a < b + cin:
            f |= CF
        if (a ^ b ^ res) & 0x10:
            f |= AF
        if (a ^ b) & (a ^ res) & sign:
            f |= OF
        return f
    raise ValueError(f"unknown flag kind {kind}")


def condition(flags: int, cc: int) -> bool:
    """Evaluate x86 condition code ``cc`` (0-15) on an rflags value."""
    base = cc >> 1
    if base == 0:
        r = bool(flags & OF)
    elif base == 1:
        r = bool(flags & CF)
    elif base == 2:
        r = bool(flags & ZF)
    elif base == 3:
        r = bool(flags & (CF | ZF))
    elif base == 4:
        r = bool(flags & SF)
    elif base == 5:
        r = bool(flags & PF)
    elif base == 6:
        r = bool(flags & SF) != bool(flags & OF)
    else:
        r = bool(flags & ZF) or (bool(flags & SF) != bool(flags & OF))
    return r != bool(cc & 1)


def describe(flags: int) -> str:
    names = [n for bit, n in FLAG_NAMES if flags & bit]
    iopl = (flags & IOPL_MASK) >> IOPL_SHIFT
    return " ".join(names + [f"IOPL={iopl}"])
