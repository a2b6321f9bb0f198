"""Domain-0's part of Xen on Arm: the console backend, xenstored's rings and the ``xl`` toolstack."""
