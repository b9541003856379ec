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

import pandas as pd

from harness.errors import UsageError
from harness.measure.headline import HEADLINE_MIN_SAMPLES
from harness.store.records import Record
from harness.store.rundir import RunDir, read_records

# Columns that, with arch and seq_len, identify a cell across runs (besides the device label).
FACET_KEYS = ("device_label", "workload", "preset", "batch", "dtype", "compile", "overrides_key")


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


def load_runs(dirs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> pd.DataFrame:
    """Several run directories as one DataFrame, faceted by ``device_label``.

    Runs on the same device that measured the same cells stay apart (their labels get the
    host or directory name) instead of one silently overwriting the other.
    """
    if isinstance(dirs, (str, os.PathLike)):
        dirs = [dirs]
    dirs = list(dirs)
    if not dirs:
        raise UsageError("no run directory given")
    dirs = unique_dirs(dirs)
    frames = [load_run(d) for d in dirs]
    _disambiguate(frames)
    return pd.concat(frames, ignore_index=True)
