"""The package version, in a module of its own so that any module can read it without
importing the package root (whose public API imports lazily from across the package)."""

__version__ = "0.1.0"
