"""Each cell's share of the machine (roofline): achieved FLOP/s against the roofs the run
measured (``harness.measure.ceilings``, stored in each host's environment).

Per ok timed record: achieved = FLOPs per call / median time; arithmetic intensity =
FLOPs / bytes per call; attainable = min(peak FLOP/s, intensity × DRAM bandwidth); share =
achieved / attainable. FLOPs and bytes are the record's analytic counts
(``analytic_flops``, ``analytic_bytes``) where it has them; else the FLOPs torch's
``FlopCounterMode`` counted (``flops``: a lower bound, elementwise ops, FFTs and scans
count zero), and the share is then "at least" that of the peak; else there is no count.

Two rules keep a figure honest:

- a point above the compute roof is a **counting error** (more FLOPs counted than were
  done, or a roof measured low): it is flagged, never printed or drawn as a figure;
- a point above the DRAM roof but under the cache roof is **cache-resident** (its working
  set never left the cache): its share is of the cache roof. One above the cache roof too
  is flagged as well (its byte count, or the cache roof, is off).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from harness.measure.ceilings import Ceilings, match
from harness.measure.flops import positive
from harness.report.output import Output, describe, slug, varying, write_csv, write_text
from harness.report.tables import (
    CONTENDED_MARK,
    NOISY_MARK,
    NOT_RUN,
    STATUS_TEXT,
    THIN_MARK,
    markdown_table,
    to_latex,
    to_markdown,
)
from harness.store.load import FACET_KEYS
from harness.store.rundir import RunDir

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from harness.report.style import ArchStyle

COUNTING_ERROR = "counting error"
ABOVE_CACHE = "above the cache roof"
NO_FLOPS = "no FLOP count"
NOT_MEASURED = "not measured"
GROUP_KEYS = tuple(k for k in FACET_KEYS if k != "device_label")

COLUMNS = ["achieved_flops_per_s", "intensity", "flops_used", "bytes_used", "flops_source",
           "peak_flops", "bandwidth", "cache_bandwidth", "attainable_flops_per_s",
           "roof_share", "roof", "roof_flag", "roof_text"]


@dataclass(frozen=True)
class Share:
    """One cell against its roofs. ``share`` is None where no figure may be printed
    (``flag`` says why); ``roof`` names the roof it is a share of."""

    achieved: float | None = None  # FLOP/s
    intensity: float | None = None  # FLOP per byte
    flops: float | None = None
    bytes: float | None = None
    source: str = ""  # "analytic", "counted" (a lower bound) or ""
    attainable: float | None = None
    share: float | None = None
    roof: str = ""  # "compute", "DRAM", "cache" or "peak" (no byte count)
    flag: str = ""  # COUNTING_ERROR, ABOVE_CACHE, NO_FLOPS, NOT_MEASURED or ""

    def text(self) -> str:
        """The table's cell: ``37% DRAM``, ``≥ 2.1% of peak``, ``62% cache-resident``, or
        the flag (a counting error is never a figure)."""
        if self.share is None:
            return self.flag or NOT_MEASURED
        pct = _pct(self.share)
        low = "≥ " if self.source == "counted" else ""
        label = {"cache": "cache-resident", "peak": "of peak"}.get(self.roof, self.roof)
        return f"{low}{pct} {label}"


def _pct(x: float) -> str:
    p = 100 * x
    return f"{p:.0f}%" if p >= 10 else f"{p:.2g}%"


def share_of(time_s: float | None, ceil: Ceilings | None, *, analytic_flops: Any = None,
             analytic_bytes: Any = None, counted_flops: Any = None) -> Share:
    """The roofline of one cell from its median time, counts and ceilings."""
    t = positive(time_s)
    flops, source = positive(analytic_flops), "analytic"
    if flops is None:
        flops, source = positive(counted_flops), "counted"
    if flops is None or t is None:
        return Share(flag=NO_FLOPS if t is not None else NOT_MEASURED)
    achieved = flops / t
    bytes_ = positive(analytic_bytes) if source == "analytic" else None
    intensity = flops / bytes_ if bytes_ else None
    base = Share(achieved=achieved, intensity=intensity, flops=flops, bytes=bytes_,
                 source=source)
    if ceil is None:
        return _replace(base, flag=NOT_MEASURED)
    peak = ceil.peak_flops
    if achieved > peak:
        return _replace(base, attainable=peak, roof="compute", flag=COUNTING_ERROR)
    if intensity is None:
        return _replace(base, attainable=peak, share=achieved / peak, roof="peak")
    dram = min(peak, intensity * ceil.bandwidth)
    if achieved <= dram:
        roof = "compute" if intensity * ceil.bandwidth >= peak else "DRAM"
        return _replace(base, attainable=dram, share=achieved / dram, roof=roof)
    cache = min(peak, intensity * ceil.cache_bandwidth)
    if achieved <= cache:
        return _replace(base, attainable=cache, share=achieved / cache, roof="cache")
    return _replace(base, attainable=cache, roof="cache", flag=ABOVE_CACHE)


def _replace(s: Share, **kw: Any) -> Share:
    from dataclasses import replace

    return replace(s, **kw)


# ---------------------------------------------------------------- the records


def ceiling_entries(run_dir: str, host: str) -> list[dict[str, Any]]:
    """Every ceilings entry stored for ``host`` in a run: its ``envs/<host>.json``, then
    ``env.json`` and the environments of resumed jobs there (newest first)."""
    run = RunDir(run_dir)
    found: list[dict[str, Any]] = []
    envs = [run.host_env(host)]
    first = run.env()
    envs += [e for e in reversed(first.get("resumed") or []) if isinstance(e, dict)]
    envs.append(first)
    for env in envs:
        if host and env.get("hostname") not in (None, "", host):
            continue
        found += [c for c in env.get("ceilings") or [] if isinstance(c, dict)]
    return found


def ceilings_note(run_dir: str, host: str) -> str:
    """Why a run has no ceilings for ``host``: its note, or that it predates them."""
    env = RunDir(run_dir).host_env(host)
    if env.get("ceilings_note"):
        return str(env["ceilings_note"])
    if "ceilings" not in env:
        return "not measured: the run predates the machine's ceilings"
    return "not measured for this dtype and thread count"


def roofline_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df``'s ok timed records with the roofline :data:`COLUMNS` (and ``ceilings``: the
    matched :class:`Ceilings` or None), others with ``roof_text`` their status."""
    out = df.copy()
    entries: dict[tuple[str, str], list[dict[str, Any]]] = {}
    rows = []
    for r in df.to_dict("records"):
        if r.get("status") != "ok":
            rows.append({"roof_text": STATUS_TEXT.get(r.get("status"), r.get("status")),
                         "ceilings": None})
            continue
        where = (str(r.get("run_dir", "")), str(r.get("host", "") or ""))
        if where not in entries:
            entries[where] = ceiling_entries(*where) if where[0] else []
        threads = r.get("threads")
        threads = None if threads is None or pd.isna(threads) else int(threads)
        ceil = match(entries[where], str(r.get("device", "cpu")), str(r.get("dtype")),
                     threads, str(r.get("precision") or "strict"))
        s = share_of(r.get("time_median_s"), ceil, analytic_flops=r.get("analytic_flops"),
                     analytic_bytes=r.get("analytic_bytes"), counted_flops=r.get("flops"))
        rows.append({
            "achieved_flops_per_s": s.achieved, "intensity": s.intensity,
            "flops_used": s.flops, "bytes_used": s.bytes, "flops_source": s.source,
            "peak_flops": ceil.peak_flops if ceil else None,
            "bandwidth": ceil.bandwidth if ceil else None,
            "cache_bandwidth": ceil.cache_bandwidth if ceil else None,
            "attainable_flops_per_s": s.attainable, "roof_share": s.share, "roof": s.roof,
            "roof_flag": s.flag, "roof_text": s.text(), "ceilings": ceil,
        })
    extra = pd.DataFrame(rows, index=df.index, columns=[*COLUMNS, "ceilings"])
    for c in extra.columns:
        out[c] = extra[c]
    return out


# ---------------------------------------------------------------- tables


TABLE_TITLE = ("Share of the machine (% of the attainable FLOP/s at the cell's arithmetic "
               "intensity, and the roof that bounds it; ≥: FLOPs counted by torch, a lower "
               "bound)")


def roofline_grid(g: pd.DataFrame, arch_order: list[str]) -> pd.DataFrame:
    """Arch × length grid of one facet's shares (``roof_text``, with the time tables' marks
    of a noisy, thin or contended cell: its share rests on that time); absent cells ``n/a``."""
    lens = sorted(g["seq_len"].unique())
    archs = [a for a in arch_order if a in set(g["arch"])]
    grid = pd.DataFrame(NOT_RUN, index=pd.Index(archs), columns=pd.Index(lens), dtype=object)
    for r in g.to_dict("records"):
        if r["arch"] not in grid.index:
            continue
        text = r["roof_text"]
        if pd.notna(r.get("roof_share")):
            text += "".join(mark for col, mark in (("noisy", NOISY_MARK), ("thin", THIN_MARK),
                                                   ("contended", CONTENDED_MARK))
                            if bool(r.get(col)) and pd.notna(r.get(col)))
        grid.loc[r["arch"], r["seq_len"]] = text
    return grid


def roofline_table(g: pd.DataFrame, arch_order: list[str], output: Output, name: str,
                   comment: str) -> list[str]:
    """One facet's share table as .md/.tex/.csv under ``tables/roofline_{name}``; its
    ``index.md`` lines ([] when no record of the facet has a FLOP count)."""
    frame = roofline_frame(g)
    if not frame["flops_source"].fillna("").astype(bool).any():
        return []
    grid = roofline_grid(frame, arch_order)
    stem = output.out / "tables" / f"roofline_{name}"
    md = to_markdown(grid)
    write_text(stem.with_suffix(".md"), f"{TABLE_TITLE}\n\n{md}")
    write_text(stem.with_suffix(".tex"), to_latex(grid, f"share of the machine: {comment}"))
    keys = [k for k in FACET_KEYS if k in frame.columns]
    write_csv(frame[keys + ["arch", "seq_len", "status", *COLUMNS]], stem.with_suffix(".csv"))
    return [f"**{TABLE_TITLE}** — {output.links(stem)}", "", md]


# ---------------------------------------------------------------- the section


INTRO = (
    "Each cell against the machine's roofs, measured on the host that ran it when the run "
    "started (or read from that host's cache of them): peak FLOP/s of a large matmul in "
    "the cell's dtype and thread count, DRAM bandwidth of a large streaming copy or add "
    "(bytes read + written), and a cache roof (the same copy of cache-sized tensors). "
    "Achieved = FLOPs per call / median time; intensity = FLOPs / bytes per call; "
    "attainable = min(peak, intensity × DRAM bandwidth); the tables give achieved / "
    "attainable and the roof that bounds it. FLOPs and bytes are the records' analytic "
    "counts; where a record has none, the FLOPs torch's FlopCounterMode counted (a lower "
    "bound: elementwise ops, FFTs and scans count zero; shown with ≥, of peak). A cell "
    "above the compute roof is a counting error and is never shown as a figure; one above "
    "the DRAM roof but under the cache roof is cache-resident (its share is of the cache "
    "roof)."
)


def _si(x: float | None, unit: str) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    for div, p in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            v = x / div
            return f"{v:.3g} {p}{unit}"
    return f"{x:.3g} {unit}"


def ceilings_lines(ceils: list[Ceilings]) -> list[str]:
    """The measured ceilings of one device (one row per dtype and thread count), and on
    CUDA the datasheet's figures with their source."""
    rows = []
    for c in ceils:
        when = c.measured_at + (" (cached)" if c.cached else "")
        others = "" if c.others_cores is None else f"; others used {c.others_cores:.2f} cores"
        rows.append({
            "dtype": c.dtype,
            "threads": str(c.threads) if c.kind == "cpu" else "—",
            "peak (matmul)": _si(c.peak_flops, "FLOP/s"),
            "DRAM (copy/add)": _si(c.bandwidth, "B/s"),
            "cache (copy)": _si(c.cache_bandwidth, "B/s"),
            "ridge (FLOP/B)": f"{c.peak_flops / c.bandwidth:.3g}",
            "measured": f"{when}, {c.seconds:.1f} s, torch {c.torch}{others}",
        })
    lines = [markdown_table(pd.DataFrame(rows), left=["dtype", "measured"])]
    methods = {k: v for c in ceils for k, v in c.method.items()}
    lines += [f"- **{k}**: {v}" for k, v in methods.items()]
    sheets = {}
    for c in ceils:
        if c.kind != "cuda":
            continue
        if c.datasheet:
            sheets[c.datasheet["sku"]] = c.datasheet
        elif c.datasheet_note:
            lines.append(f"- **datasheet**: {c.datasheet_note}")
    for sku, d in sheets.items():
        lines.append(
            f"- **datasheet, {sku}** (dense): FP32 {_si(d['fp32'], 'FLOP/s')}, TF32 tensor "
            f"core {_si(d['tf32'], 'FLOP/s')}, BF16 tensor core {_si(d['bf16'], 'FLOP/s')}, "
            f"HBM {_si(d['bandwidth'], 'B/s')} (printed with sparsity: {d['sparse']}); "
            f"source: [{d['source']}]({d['url']})")
    return lines + [""]


def share_section(df: pd.DataFrame, styles: dict[str, ArchStyle], output: Output) -> list[str]:
    """``## Share of the machine``: per device, its ceilings, what counts the records
    carry, and the roofline figure."""
    frame = roofline_frame(df)
    ok = frame[frame["status"] == "ok"]
    if ok.empty:
        return []
    lines = ["## Share of the machine (roofline)", "", INTRO, ""]
    for dev, d in ok.groupby("device_label", sort=True):
        lines += [f"### {dev}", ""]
        ceils = _distinct([c for c in d["ceilings"] if c is not None])
        if ceils:
            lines += ["Ceilings:", ""] + ceilings_lines(ceils)
        missing = d[d["ceilings"].isna()]
        if not missing.empty:
            notes = sorted({ceilings_note(r.run_dir, r.host or "") for r in
                            missing.itertuples(index=False)})
            lines += [f"Ceilings {'of some cells ' if ceils else ''}{n}." for n in notes] + [""]
        sources = d["flops_source"].fillna("")
        n_an, n_ct = int((sources == "analytic").sum()), int((sources == "counted").sum())
        n_none = int((sources == "").sum())
        lines.append(
            f"FLOP counts: {n_an} cell(s) analytic, {n_ct} counted by torch (lower bounds), "
            f"{n_none} without; byte counts: {int(d['bytes_used'].notna().sum())} cell(s).")
        errors = d[d["roof_flag"].isin([COUNTING_ERROR, ABOVE_CACHE])]
        for r in errors.itertuples(index=False):
            lines.append(f"- `{r.arch}` {r.workload} n={r.seq_len}: {r.roof_flag} "
                         "(not shown as a figure)")
        n_cache = int((d["roof"] == "cache").sum() - (d["roof_flag"] == ABOVE_CACHE).sum())
        if n_cache:
            lines.append(f"{n_cache} cell(s) cache-resident (above the DRAM roof, under the "
                         "cache roof).")
        lines.append("")
        drawable = _drawable(d)
        if drawable.empty:
            lines += ["No roofline figure: no cell has both a FLOP and a byte count against "
                      "measured ceilings.", ""]
            continue
        lines += output.figure(
            lambda w, dd=drawable: plot_roofline(dd, styles=styles, width=w),
            f"roofline_{slug(dev)}",
            f"Roofline on {dev}: achieved FLOP/s vs arithmetic intensity, one point per cell "
            "(colour and marker: architecture, size: length); roofs: compute (matmul), DRAM "
            "and cache (streaming copies)" + (", datasheet dotted" if (drawable["ceilings"].map(
                lambda c: bool(c.datasheet))).any() else ""),
            f"roofline {dev}")
    return lines


def _distinct(ceils: list[Ceilings]) -> list[Ceilings]:
    seen: dict[str, Ceilings] = {}
    for c in ceils:
        seen.setdefault(c.key(), c)
    return sorted(seen.values(), key=lambda c: (c.dtype, c.threads))


def _drawable(d: pd.DataFrame) -> pd.DataFrame:
    return d[d["roof_share"].notna() & d["intensity"].notna() & d["ceilings"].notna()]


# ---------------------------------------------------------------- the figure


def _fmt_len(n: int) -> str:
    return f"{n >> 10}k" if n >= 1024 and n % 1024 == 0 else str(n)


def plot_roofline(d: pd.DataFrame, *, styles: dict[str, ArchStyle],
                  width: str = "double") -> Figure:
    """One device's cells on log-log axes (intensity, FLOP/s) under its roofs, one panel
    per workload (and other varying keys); colour and marker by architecture, as in the
    report's other figures (a bench has a dozen: colour alone repeats), size by length."""
    import matplotlib as mpl
    import numpy as np
    import seaborn as sns
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from harness.report.figures import freeze, legend_below, legend_columns, new_figure
    from harness.report.style import WIDTHS, rc_for_width

    keys = [k for k in GROUP_KEYS if k in d.columns]
    vary = varying(d, tuple(keys))
    groups = list(d.groupby(keys, sort=True, dropna=False))
    lens = sorted(int(n) for n in d["seq_len"].unique())
    grow = {n: 1.6 * min(i, 3) for i, n in enumerate(lens)}  # points of marker size added
    archs = [a for a in styles if a in set(d["arch"])]
    sheet = any(bool(c.datasheet and c.datasheet.get("peak_flops")) for c in d["ceilings"])
    n_items = len(archs) + len(lens) + 3 + sheet
    ncol = legend_columns(len(groups), width, n_items, entry_in=1.3)
    with mpl.rc_context(sns.axes_style("ticks")), mpl.rc_context(rc_for_width(WIDTHS[width])):
        fig, panels = new_figure(len(groups), width, math.ceil(n_items / ncol) + 1, 0)
        for panel, (values, g) in zip(panels, groups, strict=True):
            ax = panel.ax
            key = dict(zip(keys, values if isinstance(values, tuple) else (values,),
                           strict=True))
            c: Ceilings = g["ceilings"].iloc[0]
            ds = c.datasheet or {}
            ds_peak, ds_bw = ds.get("peak_flops"), ds.get("bandwidth")
            xs = g["intensity"].astype(float)
            ys = g["achieved_flops_per_s"].astype(float)
            ridge = c.peak_flops / c.bandwidth
            x_lo = min(xs.min(), c.peak_flops / c.cache_bandwidth) / 4
            x_hi = max(xs.max(), ridge, ds_peak / ds_bw if ds_peak and ds_bw else 0) * 4
            top = max(c.peak_flops, ds_peak or 0)
            xx = np.geomspace(x_lo, x_hi, 256)
            roofs = [(c.peak_flops, c.bandwidth, dict(color="0.15", linewidth=1.3),
                      "compute / DRAM roof"),
                     (c.peak_flops, c.cache_bandwidth,
                      dict(color="0.45", linewidth=1.0, linestyle="--"), "cache roof")]
            if ds_peak and ds_bw:
                roofs.append((ds_peak, ds_bw, dict(color="0.6", linewidth=0.9, linestyle=":"),
                              f"datasheet ({ds.get('sku')})"))
            handles = []
            for peak, bw, line, label in roofs:
                ax.plot(xx, np.minimum(peak, xx * bw), zorder=2, **line)
                handles.append(Line2D([], [], label=label, **line))
            size = mpl.rcParams["lines.markersize"] + 1.5
            # longer lengths larger and beneath: cells at one point (the same intensity and
            # rate at two lengths) show both markers, one inside the other
            for r in g.sort_values("seq_len", ascending=False).itertuples(index=False):
                n = int(r.seq_len)
                ax.plot([r.intensity], [r.achieved_flops_per_s], linestyle="none",
                        marker=styles[r.arch].marker, color=styles[r.arch].color,
                        markersize=size + grow[n], markeredgecolor="white",
                        markeredgewidth=0.6, zorder=4)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(x_lo, x_hi)
            ax.set_ylim(min(ys.min(), x_lo * c.bandwidth) / 3, top * 3)
            plain = FuncFormatter(lambda v, _p: f"{v:g}")
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_locator(LogLocator(base=10))
                axis.set_minor_locator(LogLocator(base=10, subs=tuple(range(2, 10))))
                axis.set_minor_formatter(NullFormatter())
            ax.xaxis.set_major_formatter(plain)
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: _si(v, "")))
            fs = mpl.rcParams["font.size"] - 1.5
            ax.annotate(f"{_si(c.peak_flops, 'FLOP/s')}", (x_hi, c.peak_flops), xytext=(-2, 2),
                        textcoords="offset points", ha="right", va="bottom", fontsize=fs,
                        color="0.15")
            x_text = x_lo * 1.5  # under each slope, at its left: clear of the line
            for bw, colour in ((c.bandwidth, "0.15"), (c.cache_bandwidth, "0.45")):
                if x_text * bw < 0.5 * c.peak_flops:
                    ax.annotate(_si(bw, "B/s"), (x_text, x_text * bw), xytext=(3, -3),
                                textcoords="offset points", ha="left", va="top", fontsize=fs,
                                color=colour)
            ax.set_xlabel("arithmetic intensity (FLOP/byte)")
            ax.set_ylabel("achieved FLOP/s")
            ax.grid(True, which="major", axis="both")
            sns.despine(ax=ax)
            extra = describe(key, vary)
            ax.set_title(str(key.get("workload", "")) + (f" ({extra})" if extra else ""),
                         loc="left")
            present = set(g["arch"])
            handles = [Line2D([], [], linestyle="none", color=styles[a].color,
                              marker=styles[a].marker, markersize=size, label=a)
                       for a in archs if a in present] + [
                Line2D([], [], linestyle="none", marker="o", color="0.35",
                       markersize=size - 1 + grow[n], label=f"n={_fmt_len(n)}")
                for n in lens if n in set(g["seq_len"].astype(int))] + handles
            legend_below(ax, handles, ncol, offset=-0.2)
        return freeze(fig)
