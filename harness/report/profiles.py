"""The figure of a profile breakdown (``harness.profile``'s numbers, the report's style): used
by the report's profile section and by ``python -m harness profile``."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from harness.measure.timing import format_seconds
from harness.profile.breakdown import CATEGORIES

CATEGORY_COLORS = {  # Okabe–Ito, with greys for the two catch-all categories
    "FFT": "#0072B2",
    "matmul/GEMM": "#D55E00",
    "convolution": "#009E73",
    "fused RNN": "#000000",
    "elementwise": "#CC79A7",
    "reduction/norm": "#E69F00",
    "memory copies": "#56B4E9",
    "overhead": "#555555",
    "other": "#BBBBBB",
}


def figure(long: pd.DataFrame, stem: str | os.PathLike[str]) -> list[Path]:
    """Stacked bars of each category's share of a step, one bar per architecture and one
    panel per sequence length; each bar's label gives the step's total time.

    Shares, not milliseconds, are stacked: step times differ by orders of magnitude across
    architectures (a linear axis hides the fast ones, a log axis distorts stacks); the
    milliseconds are in the table. Writes ``stem.png`` (300 dpi) and ``stem.pdf``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from harness.report.style import WIDTHS, rc_for_width

    df = long.copy()
    df["category"] = pd.Categorical(df["category"].astype(str), categories=list(CATEGORIES),
                                    ordered=True)
    used = [c for c in CATEGORIES if df.loc[df["category"] == c, "time_ms"].sum() > 0]
    df = df[df["category"].isin(used)]
    df["category"] = df["category"].cat.remove_unused_categories()
    df["percent"] = 100 * df["share"]
    lengths = sorted(df["seq_len"].unique())
    archs = sorted(df["arch"].unique())
    width = WIDTHS["double"] if len(lengths) * len(archs) > 4 else WIDTHS["single"] * 1.4
    with plt.rc_context(rc_for_width(width)), sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, len(lengths), figsize=(width, 2.6), squeeze=False,
                                 sharey=True)
        for j, n in enumerate(lengths):
            ax = axes[0][j]
            sub = df[df["seq_len"] == n]
            sns.histplot(sub, x="arch", weights="percent", hue="category", hue_order=used,
                         multiple="stack", discrete=True, shrink=0.75, linewidth=0.3,
                         palette=CATEGORY_COLORS, alpha=1.0, ax=ax, legend=j == 0)
            totals = sub.groupby("arch")["time_ms"].sum()
            names = [t.get_text() for t in ax.get_xticklabels()]
            ax.set_xticks(ax.get_xticks(),
                          [f"{a}\n{format_seconds(totals[a] / 1e3)}" if a in totals else a
                           for a in names])
            if len(archs) > 3:
                ax.tick_params(axis="x", rotation=30)
            ax.set_xlabel("")
            ax.set_ylabel("% of step" if j == 0 else "")
            ax.set_ylim(0, 100)
            ax.grid(False, axis="x")
            ax.set_title(f"n = {n:,}")
        legend = axes[0][0].get_legend()
        if legend is not None:  # one legend for all panels, right of them, top = top of stack
            handles, labels = legend.legend_handles, [t.get_text() for t in legend.get_texts()]
            legend.remove()
            fig.legend(handles, labels, loc="center left", frameon=False,
                       bbox_to_anchor=(1.0, 0.5), title="category")
        meta = df.iloc[0]
        fig.suptitle(f"where a step's time goes ({meta['workload']}, batch {meta['batch']}, "
                     f"{meta['preset']} preset, {meta['device']}, {meta['dtype']}); "
                     "label: time per profiled step")
        fig.tight_layout()
        paths = [Path(f"{stem}.png"), Path(f"{stem}.pdf")]
        fig.savefig(paths[0], dpi=300, bbox_inches="tight")
        fig.savefig(paths[1], bbox_inches="tight")
        plt.close(fig)
    return paths
