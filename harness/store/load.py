"""The one loader of runs into a DataFrame (reports, compare, the summary, the Python API).

Rows keep the latest record of each cell per run directory, and gain ``run_dir``,
``hostname``, ``device_name`` and ``device_label`` from the environment of the machine
that measured each record (``RunDir.host_env``), plus ``thin`` and ``overrides_key``: with
``arch`` and ``seq_len``, :data:`FACET_KEYS` identify a cell across runs. Records of
schema 1 and 2 load alike (``thin`` is derived for schema 1).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import UsageError
from harness.measure.headline import HEADLINE_MIN_SAMPLES, headline_rounds_of
from harness.store.records import Record
from harness.store.rundir import RunDir, read_records

# Columns that, with arch and seq_len, identify a cell across runs (besides the device label).
FACET_KEYS = ("device_label", "workload", "preset", "batch", "dtype", "compile", "overrides_key")

RUN_STRIDE = 1 << 20  # a pooled round label: run * RUN_STRIDE + round (see :func:`pooled_round`)


def pooled_round(run: int, round_: int) -> int:
    """The round label of round ``round_`` of the ``run``-th of several pooled runs of one
    cell: still one int per sample, so every reader of ``sample_rounds`` works unchanged,
    and :func:`harness.report.bootstrap.resampled_medians` recovers the run as the top level."""
    if not 0 <= round_ < RUN_STRIDE:
        raise ValueError(f"round {round_} outside 0..{RUN_STRIDE - 1}")
    return run * RUN_STRIDE + round_


def device_label(device: str, device_name: str | None) -> str:
    """A human label for a record's device: the env's ``device_name`` when it describes it.

    A run's ``env.json`` names one device; a CPU record of a GPU run must not borrow the
    GPU's name, so the name is used only when its kind matches the record's device.
    """
    kind = device.split(":")[0]
    name = (device_name or "").strip()
    if not name:
        return device
    if name.lower().startswith("cpu:"):
        return f"CPU: {name[4:].strip()}" if kind == "cpu" else device
    if kind == "cpu":
        return device
    return name


def read_env(d: str | os.PathLike[str]) -> dict[str, Any]:
    return RunDir(d).env()  # damaged: {} with a warning


def load_run(d: str | os.PathLike[str]) -> pd.DataFrame:
    """The latest record per cell of one run directory, with env columns added."""
    recs = read_records(d)  # UsageError: missing dir, no records, other schema version
    latest = {r.cell_id: r for r in recs}
    return records_frame(list(latest.values()), d)


def records_frame(recs: Sequence[Record], d: str | os.PathLike[str]) -> pd.DataFrame:
    """``recs`` of run directory ``d`` (in their order) as rows with env columns added;
    no records: an empty DataFrame."""
    if not recs:
        return pd.DataFrame()
    df = pd.DataFrame([asdict(r) for r in recs])
    run = RunDir(d)
    # each record's own machine (a Slurm run may span hosts with different devices)
    envs = {host: run.host_env(host) for host in set(df["host"])}
    env = [envs[host] for host in df["host"]]
    df["run_dir"] = str(d)
    df["hostname"] = [h or e.get("hostname", "") for h, e in zip(df["host"], env, strict=True)]
    df["device_name"] = [e.get("device_name") or "" for e in env]
    df["cpu_count"] = [e.get("cpu_count") for e in env]  # to judge contention later
    df["device_label"] = [device_label(dev, e.get("device_name"))
                          for dev, e in zip(df["device"], env, strict=True)]
    df["thin"] = mark_thin(df)
    df["overrides_key"] = [
        ",".join(f"{k}={v}" for k, v in sorted((o or {}).items())) for o in df["overrides"]
    ]
    return df


def mark_thin(df: pd.DataFrame) -> pd.Series:
    """Ok cells resting on fewer than ``HEADLINE_MIN_SAMPLES`` samples (records of schema 1 have no
    ``thin`` field, so it is derived from their samples here too)."""
    n = pd.Series([len(s) if isinstance(s, list) else 0 for s in df["samples"]], index=df.index)
    flagged = df["thin"].fillna(False).astype(bool) if "thin" in df else False
    return (df["status"] == "ok") & (flagged | (n < HEADLINE_MIN_SAMPLES))


def _disambiguate(frames: list[pd.DataFrame]) -> None:
    """Runs sharing a device label and some cells get ``@host`` (or ``@dir``) appended."""
    seen: dict[str, list[int]] = {}
    for i, f in enumerate(frames):
        for label in f["device_label"].unique():
            seen.setdefault(label, []).append(i)
    for label, idx in seen.items():
        if len(idx) < 2:
            continue
        cells = [set(frames[i].loc[frames[i]["device_label"] == label, "cell_id"]) for i in idx]
        if not any(cells[a] & cells[b] for a in range(len(idx)) for b in range(a + 1, len(idx))):
            continue  # complementary runs on one device: keep them together
        hosts = [str(frames[i]["hostname"].iloc[0]) for i in idx]
        use_host = len(set(hosts)) == len(hosts) and all(hosts)
        for i, host in zip(idx, hosts, strict=True):
            suffix = host if use_host else Path(frames[i]["run_dir"].iloc[0]).name
            mask = frames[i]["device_label"] == label
            frames[i].loc[mask, "device_label"] = f"{label} @{suffix}"


def unique_dirs(dirs: Iterable[str | os.PathLike[str]]) -> list[str | os.PathLike[str]]:
    """Each run directory once: a run given twice would be two runs with the same cells."""
    unique: dict[str, str | os.PathLike[str]] = {}
    for d in dirs:
        key = os.path.realpath(d)
        if key in unique:
            warnings.warn(f"run directory {str(d)!r} given twice; reading it once", stacklevel=2)
            continue
        unique[key] = d
    return list(unique.values())


def load_runs(dirs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
              pool: bool = False) -> pd.DataFrame:
    """Several run directories as one DataFrame, faceted by ``device_label``.

    Runs on the same device that measured the same cells stay apart (their labels get the
    host or directory name) instead of one silently overwriting the other; with ``pool``
    they are repeats of one experiment, and each such cell becomes one row
    (:func:`pool_runs`).
    """
    if isinstance(dirs, (str, os.PathLike)):
        dirs = [dirs]
    dirs = list(dirs)
    if not dirs:
        raise UsageError("no run directory given")
    dirs = unique_dirs(dirs)
    frames = [load_run(d) for d in dirs]
    if pool:
        return pool_runs(pd.concat(frames, ignore_index=True))
    _disambiguate(frames)
    return pd.concat(frames, ignore_index=True)


def pool_runs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per device and cell from several runs' rows of it (repeats of the same
    command; Kalibera and Jones's top level: a machine state that lasts longer than one
    run is only sampled by running again).

    A pooled row keeps each run's headline samples (its quiet ones, see
    :func:`~harness.measure.headline.headline_rounds_of`) with round labels that name
    the run (:func:`pooled_round`, the run's place among all given: a cell's runs are
    matched to another's), so its interval resamples runs, then their rounds, then samples;
    its times are those of the pooled samples, its peak memory the largest, its flags any
    run's. A cell that did not end ``ok`` in every run shows the first run's failure
    instead of a figure (a pooled number must not hide a failure). ``pooled_dirs`` lists
    the runs of every row; other fields are the first run's.
    """
    order = {d: k for k, d in enumerate(dict.fromkeys(df["run_dir"]))}  # a run's label
    rows = []
    for _, g in df.groupby(["device_label", "cell_id"], sort=False):
        failed = g[g["status"] != "ok"]
        row = (failed if len(failed) else g).iloc[0].copy()
        row["pooled_dirs"] = list(dict.fromkeys(g["run_dir"]))
        if len(g) > 1 and len(failed):
            row["message"] = f"in {row['run_dir']} ({len(g)} runs pooled): {row['message']}"
        elif len(g) > 1:
            row.update(_pooled_times(g, row, order))
        rows.append(row)
    out = pd.DataFrame(rows).reset_index(drop=True)
    out["thin"] = mark_thin(out)
    return out


def _pooled_times(g: pd.DataFrame, row: pd.Series, order: dict[str, int]) -> dict[str, Any]:
    """The measured fields of a cell ``ok`` in every run of ``g`` (see :func:`pool_runs`)."""
    samples: list[float] = []
    labels: list[int] = []
    for r in g.itertuples(index=False):
        kept, rounds = headline_rounds_of(r)
        samples += kept
        labels += [pooled_round(order[r.run_dir], x) for x in (rounds or [0] * len(kept))]
    if not samples:  # a task cell: its figures are curves and seeds, not samples
        raise UsageError(f"--pool pools timed cells; {row['cell_id']} has no samples and is in "
                         f"{len(g)} runs: repeat a task with other seeds (--set seed=N)")
    median = float(np.median(samples))
    scale = median / float(row["time_median_s"])  # per-token figures follow the time
    q1, q3 = np.percentile(samples, [25, 75])
    return {
        "samples": samples, "sample_rounds": labels, "contention": [],
        "n_samples": len(samples), "rounds": len(set(labels)),
        "time_median_s": median, "time_iqr_s": float(q3 - q1),
        "time_min_s": float(min(samples)), "rel_ci": None, "stop_reason": "pooled",
        "noisy": bool(g["noisy"].any()), "contended": bool(g["contended"].any()),
        "thin": False, "peak_mem_bytes": _largest(g["peak_mem_bytes"]),
        "time_per_token_s": _scaled(row["time_per_token_s"], scale),
        "tokens_per_s": _scaled(row["tokens_per_s"], 1 / scale),
        "flops_per_s": _scaled(row["flops_per_s"], 1 / scale),
    }


def _largest(values: pd.Series) -> float | None:
    known = values.dropna()
    return None if known.empty else known.max()


def _scaled(value: Any, factor: float) -> Any:
    return value * factor if value is not None and value == value else value
