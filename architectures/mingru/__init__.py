"""minGRU / minLSTM. Importing this package registers ``mingru`` and ``minlstm``.

``scan.py`` holds the log-space scan and its loop reference; ``model.py`` the cells.
"""

from architectures.mingru.scan import g, log_g, log_space_scan, recurrence_ref, softplus

from architectures.mingru import model  # noqa: E402,F401  isort: skip

__all__ = ["g", "log_g", "log_space_scan", "recurrence_ref", "softplus"]
