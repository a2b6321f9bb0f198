"""The Arm profile of the teaching ISA: A64 encodings as a real core decodes them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.errors import UserError
from lab.isa.a64 import A64DecodeError, decode, decode_bit_masks, disassemble, encode, encode_bit_masks
from lab.isa.assembler import assemble
from lab.isa.image import Image

# Words checked against the Arm ARM's encoding tables (and what GNU objdump prints for them).
KNOWN = [
    ("hvc #0xea1", 0xD401D422),          # Xen's hypercall: HVC with XEN_HYPERCALL_TAG
    ("svc #0", 0xD4000001),
    ("smc #0", 0xD4000003),
    ("brk #0", 0xD4200000),
    ("eret", 0xD69F03E0),
    ("ret", 0xD65F03C0),
    ("br x1", 0xD61F0020),
    ("blr x2", 0xD63F0040),
    ("wfi", 0xD503207F),
    ("nop", 0xD503201F),
    ("isb", 0xD5033FDF),
    ("dsb sy", 0xD5033F9F),
    ("mov x0, #1", 0xD2800020),
    ("movk x0, #0x1234, lsl #16", 0xF2A24680),
    ("mov x0, #-1", 0x92800000),
    ("add x0, x1, #1", 0x91000420),
    ("sub sp, sp, #0x10", 0xD10043FF),
    ("add x0, x1, x2", 0x8B020020),
    ("subs x0, x1, x2", 0xEB020020),
    ("cmp x0, #0", 0xF100001F),
    ("mov x1, sp", 0x910003E1),
    ("mov x0, x1", 0xAA0103E0),
    ("and x0, x0, #0xfff", 0x92402C00),
    ("mul x0, x1, x2", 0x9B027C20),
    ("udiv x0, x1, x2", 0x9AC20820),
    ("lsl x0, x1, #12", 0xD374CC20),
    ("lsr x0, x1, #4", 0xD344FC20),
    ("cset x0, eq", 0x9A9F17E0),
    ("ldr x0, [x1, #8]", 0xF9400420),
    ("str w0, [x1, #4]", 0xB9000420),
    ("ldrb w3, [x4]", 0x39400083),
    ("str x30, [sp, #-16]!", 0xF81F0FFE),
    ("ldr x30, [sp], #16", 0xF84107FE),
    ("stp x29, x30, [sp, #-16]!", 0xA9BF7BFD),
    ("ldp x29, x30, [sp], #16", 0xA8C17BFD),
    ("msr vbar_el1, x0", 0xD518C000),
    ("mrs x0, currentel", 0xD5384240),
    ("msr hcr_el2, x0", 0xD51C1100),
    ("msr vttbr_el2, x0", 0xD51C2100),
    ("mrs x0, esr_el2", 0xD53C5200),
    ("mrs x1, hpfar_el2", 0xD53C6081),
    ("msr daifset, #0xf", 0xD5034FDF),
    ("msr daifclr, #2", 0xD50342FF),
    ("tlbi vmalle1", 0xD508871F),
    ("tlbi vae1, x0", 0xD5088720),
    ("tlbi alle2", 0xD50C871F),
]


def words_of(src: str) -> list[int]:
    img = assemble(".arch arm64\n" + src, "t.s")
    data = img.sections[0].data
    return [int.from_bytes(data[k:k + 4], "little") for k in range(0, len(data), 4)]


@pytest.mark.parametrize("text,word", KNOWN)
def test_the_assembler_gives_arms_own_encoding(text, word):
    assert words_of(text) == [word]


@pytest.mark.parametrize("text,word", KNOWN)
def test_decoding_and_encoding_are_inverses(text, word):
    assert encode(decode(word)) == word


@pytest.mark.parametrize("text,word", KNOWN)
def test_the_disassembly_assembles_back_to_the_same_word(text, word):
    assert words_of(disassemble(decode(word), 0)) == [word]


def test_branches_are_relative_to_the_instruction():
    src = "start:\n    nop\n    b start\n    bl end\n    b.ne start\n    cbz x3, start\nend:\n    ret\n"
    w = words_of(src)
    assert w[1] == 0x17FFFFFF                    # b -4
    assert w[2] == 0x94000003                    # bl +12
    assert decode(w[3]).imm == -12 and decode(w[3]).cond == 1
    assert decode(w[4]).imm == -16 and decode(w[4]).rd == 3


def test_an_arm_image_says_so_and_keeps_four_byte_instructions():
    img = assemble(".arch arm64\n_start:\n    nop\n    wfi\n", "k.s")
    assert img.arch == "arm64"
    assert sorted(img.instructions) == [img.entry, img.entry + 4]
    again = Image.from_bytes(img.to_bytes())
    assert again.arch == "arm64"
    assert img.source_line(img.entry + 4).text.strip() == "wfi"


def test_an_x86_image_is_byte_for_byte_what_it_was():
    img = assemble("nop\n", "k.s")
    assert img.arch == "x86_64" and b'"arch"' not in img.to_bytes()


@pytest.mark.parametrize("src,message", [
    ("mrs x0, sctlr_el9", "unknown system register"),
    ("add x0, x1, #0x1000", "out of range"),
    ("add x0, w1, #1", "all be X or all be W"),
    ("msr currentel, x0", "read-only"),
    ("mov x0, #0x123456789", "movz and movk"),
    ("and x0, x1, #0x5", "not a logical immediate"),
    ("ldr x0, [x1, #3000000]", "out of range"),
    ("hvc #0x10000", "out of range"),
    ("tlbi vae1", "takes an address register"),
    ("frob x0", "unknown instruction 'frob'"),
    ("x0: nop", "reserved word"),
])
def test_mistakes_are_one_line_with_the_place(src, message):
    with pytest.raises(UserError) as e:
        assemble(".arch arm64\n" + src, "bad.s")
    assert str(e.value).startswith("bad.s:2:") and message in str(e.value)


def test_arch_must_come_first():
    with pytest.raises(UserError, match="before the first instruction"):
        assemble("nop\n.arch arm64\nnop\n", "bad.s")


def test_words_outside_the_subset_do_not_decode():
    with pytest.raises(A64DecodeError):
        decode(0x00000000)                       # UDF #0: permanently undefined


@given(st.integers(0, 1), st.integers(0, 63), st.integers(0, 63), st.booleans())
def test_every_logical_immediate_encodes_back_to_the_same_value(n, immr, imms, sf):
    value = decode_bit_masks(n, imms, immr, sf)
    if value is None:
        return
    enc = encode_bit_masks(value, sf)
    assert enc is not None
    assert decode_bit_masks(enc[0], enc[2], enc[1], sf) == value


def test_the_listing_shows_each_a64_word_as_objdump_does():
    from lab.isa.listing import render_listing
    img = assemble(".arch arm64\n_start:\n    hvc #0xea1   // Xen\n    ret\n", "k.s")
    lines = render_listing(img).splitlines()
    assert lines[2].split()[1:] == ["d401d422", "hvc", "#0xea1", "//", "Xen"]
    assert lines[3].split()[1] == "d65f03c0"


def test_align_pads_arm_code_with_a64_nops():
    img = assemble(".arch arm64\n    ret\n.align 16\n    ret\n", "k.s")
    data = img.sections[0].data
    assert [int.from_bytes(data[k:k + 4], "little") for k in range(0, 20, 4)] == \
        [0xD65F03C0, 0xD503201F, 0xD503201F, 0xD503201F, 0xD65F03C0]
