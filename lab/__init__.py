"""xenlab: a terminal lab that teaches how Xen virtualises a machine."""

__version__ = "0.1.0"
