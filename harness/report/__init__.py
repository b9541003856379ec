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

from harness.report.build import PRESETS, build_report, run_baseline, run_report_settings
from harness.report.scaling import fit_exponent, scaling_table
from harness.report.tables import metric_table, speedup_table
from harness.report.tasks import task_results, task_table
from harness.store.load import load_runs

__all__ = [
    "PRESETS",
    "build_report",
    "load_runs",
    "speedup_table",
    "metric_table",
    "scaling_table",
    "fit_exponent",
    "run_baseline",
    "run_report_settings",
    "task_table",
    "task_results",
]
