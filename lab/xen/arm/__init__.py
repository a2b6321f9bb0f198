"""Xen on Arm: Xen at EL2 over the Arm core of ``lab/hw/arm`` (one guest type, hvc, stage 2)."""
