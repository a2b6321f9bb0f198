"""SMCCC's own queries as Xen answers a guest (``xen/arch/arm/vsmc.c``).

A function ID's bits 29:24 name its owner (``smccc_get_owner()``). Besides PSCI
(Standard Secure Service, ``psci.py``), Xen answers:

* the Arm Architecture service (``handle_arch()``): SMCCC_VERSION is 1.2;
  SMCCC_ARCH_FEATURES says which firmware workarounds the host needs:
  WORKAROUND_1 (Spectre v2) and _3 (Spectre-BHB) are SUCCESS only on a core
  that has the hardening capability, WORKAROUND_2 (SSBD) follows the host's
  SSBD state, anything else NOT_SUPPORTED. The lab's cores are Cortex-A53s,
  which none of these affect: WORKAROUND_1 and _3 NOT_SUPPORTED and, their
  firmware answering SSBD "not required" (ARM_SSBD_MITIGATED), WORKAROUND_2
  NOT_REQUIRED. The workaround calls themselves return nothing: x0 keeps the
  function ID;
* the Hypervisor service (``handle_hypervisor()``): its call count (3), its
  UID ``XEN_SMCCC_UID`` and revision 0.1 (``public/arch-arm/smccc.h``): how a
  guest finds out it runs on Xen without a device tree;
* the Standard service's generic queries (``handle_sssc()``): call count 3 +
  VPSCI_NR_FUNCS (14) + FFA_NR_FUNCS (0: the lab has no FF-A mediator),
  ``SSSC_SMCCC_UID`` and revision 0.1.

A UID goes back in x0-x3, four bytes each, the first byte lowest (``fill_uid()``,
ARM DEN 0028B); a revision in x0 (major) and x1 (minor).
"""

from __future__ import annotations

from ...isa.bits import M64

ARM_SMCCC_OWNER_ARCH = 0
ARM_SMCCC_OWNER_STANDARD = 4
ARM_SMCCC_OWNER_HYPERVISOR = 5
ARM_SMCCC_SUCCESS = 0
ARM_SMCCC_NOT_SUPPORTED = -1
ARM_SMCCC_NOT_REQUIRED = -2
ARM_SMCCC_VERSION_1_2 = 0x10002


def call_val(owner: int, func: int) -> int:
    """ARM_SMCCC_CALL_VAL(FAST_CALL, CONV_32, owner, func)."""
    return 0x80000000 | (owner << 24) | func


ARM_SMCCC_VERSION_FID = call_val(ARM_SMCCC_OWNER_ARCH, 0)
ARM_SMCCC_ARCH_FEATURES_FID = call_val(ARM_SMCCC_OWNER_ARCH, 1)
ARM_SMCCC_ARCH_WORKAROUND_1_FID = call_val(ARM_SMCCC_OWNER_ARCH, 0x8000)
ARM_SMCCC_ARCH_WORKAROUND_2_FID = call_val(ARM_SMCCC_OWNER_ARCH, 0x7FFF)
ARM_SMCCC_ARCH_WORKAROUND_3_FID = call_val(ARM_SMCCC_OWNER_ARCH, 0x3FFF)
CALL_COUNT, CALL_UID, REVISION = 0xFF00, 0xFF01, 0xFF03

#: XEN_DEFINE_UUID(a, b, c, d, e1..e6): a, b, c and d big-endian, then the six bytes.
XEN_SMCCC_UID = bytes.fromhex("a71812dc" "c698" "4369" "9acf" "79d18ddee667")
SSSC_SMCCC_UID = bytes.fromhex("f863386f" "4b39" "4cbd" "9220" "ce1641e59f6f")
XEN_SMCCC_FUNCTION_COUNT = 3
VPSCI_NR_FUNCS = 14
FFA_NR_FUNCS = 0
SSSC_SMCCC_FUNCTION_COUNT = 3 + VPSCI_NR_FUNCS + FFA_NR_FUNCS
REVISION_0_1 = (0, 1)

#: SMCCC_ARCH_FEATURES on the lab's Cortex-A53 host (see the module's docstring).
ARCH_FEATURES = {ARM_SMCCC_ARCH_WORKAROUND_1_FID: ARM_SMCCC_NOT_SUPPORTED,
                 ARM_SMCCC_ARCH_WORKAROUND_2_FID: ARM_SMCCC_NOT_REQUIRED,
                 ARM_SMCCC_ARCH_WORKAROUND_3_FID: ARM_SMCCC_NOT_SUPPORTED}

NAMES = {ARM_SMCCC_VERSION_FID: "SMCCC_VERSION", ARM_SMCCC_ARCH_FEATURES_FID: "SMCCC_ARCH_FEATURES",
         ARM_SMCCC_ARCH_WORKAROUND_1_FID: "SMCCC_ARCH_WORKAROUND_1",
         ARM_SMCCC_ARCH_WORKAROUND_2_FID: "SMCCC_ARCH_WORKAROUND_2",
         ARM_SMCCC_ARCH_WORKAROUND_3_FID: "SMCCC_ARCH_WORKAROUND_3",
         call_val(ARM_SMCCC_OWNER_HYPERVISOR, CALL_COUNT): "Hypervisor service call count",
         call_val(ARM_SMCCC_OWNER_HYPERVISOR, CALL_UID): "Hypervisor service UID",
         call_val(ARM_SMCCC_OWNER_HYPERVISOR, REVISION): "Hypervisor service revision",
         call_val(ARM_SMCCC_OWNER_STANDARD, CALL_COUNT): "Standard service call count",
         call_val(ARM_SMCCC_OWNER_STANDARD, CALL_UID): "Standard service UID",
         call_val(ARM_SMCCC_OWNER_STANDARD, REVISION): "Standard service revision"}


def uid_words(uid: bytes) -> list[int]:
    """fill_uid(): four registers of four bytes, the first byte in the low-order bits."""
    return [int.from_bytes(uid[n * 4:n * 4 + 4], "little") for n in range(4)]


def _set(x: list[int], values: list[int]) -> bool:
    for n, value in enumerate(values):
        x[n] = value & M64
    return True


def handle_arch(x: list[int], fid: int) -> bool:
    """handle_arch(): False for a function it does not know."""
    if fid == ARM_SMCCC_VERSION_FID:
        return _set(x, [ARM_SMCCC_VERSION_1_2])
    if fid == ARM_SMCCC_ARCH_FEATURES_FID:
        return _set(x, [ARCH_FEATURES.get(x[1] & 0xFFFFFFFF, ARM_SMCCC_NOT_SUPPORTED)])
    # the workarounds return nothing; _2 changes nothing either when SSBD is not runtime-switched
    return fid in ARCH_FEATURES


def handle_generic(x: list[int], fid: int, owner: int) -> bool:
    """The call count, UID and revision queries of the Hypervisor and Standard services."""
    hyp = owner == ARM_SMCCC_OWNER_HYPERVISOR
    if fid == call_val(owner, CALL_COUNT):
        return _set(x, [XEN_SMCCC_FUNCTION_COUNT if hyp else SSSC_SMCCC_FUNCTION_COUNT])
    if fid == call_val(owner, CALL_UID):
        return _set(x, uid_words(XEN_SMCCC_UID if hyp else SSSC_SMCCC_UID))
    if fid == call_val(owner, REVISION):
        return _set(x, list(REVISION_0_1))
    return False
