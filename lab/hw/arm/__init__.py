"""The Arm machine: an Armv8-A core with EL0-EL2, two stages of translation, a GICv3 and the generic timer."""
