"""Mamba: the selective state-space model. Importing this package registers ``mamba``.

``scan.py`` holds the math (the parallel scan, the selective scan and their loop
references); ``model.py`` the block and the adapter.
"""

from architectures.mamba.scan import (
    linear_scan,
    linear_scan_ref,
    selective_scan,
    selective_scan_ref,
)

from architectures.mamba import model  # noqa: E402,F401  isort: skip

__all__ = ["linear_scan", "linear_scan_ref", "selective_scan", "selective_scan_ref"]
