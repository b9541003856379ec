"""The report (``python -m harness report``, see :mod:`harness.cli.report`).

Speedup and absolute tables (Markdown, booktabs LaTeX, CSV) and figures (PDF, SVG, PNG)
from one or several run directories, faceted by device, tied together by ``index.md``.
The pipeline is :mod:`harness.report.build`, the ``index.md`` sections
:mod:`~harness.report.sections`, the figure catalogue :mod:`~harness.report.catalogue`.
The same pieces are plain functions returning DataFrames for notebooks::

    from harness.report import load_runs, speedup_table, scaling_table
    df = load_runs(["runs/cpu", "runs/h100"])
    speedup_table(df, baseline="lmu")
"""

import importlib
from typing import Any

# Imported when first used: ``run`` prints its summary through ``harness.report.summary``
# without loading the figure stack (matplotlib, seaborn) that the full report needs.
_HOME = {
    "PRESETS": "harness.report.build",
    "build_report": "harness.report.build",
    "run_baseline": "harness.report.build",
    "run_report_settings": "harness.report.build",
    "fit_exponent": "harness.report.scaling",
    "scaling_table": "harness.report.scaling",
    "metric_table": "harness.report.tables",
    "speedup_table": "harness.report.tables",
    "task_results": "harness.report.tasks",
    "task_table": "harness.report.tasks",
    "load_runs": "harness.store.load",
}
__all__ = list(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)
