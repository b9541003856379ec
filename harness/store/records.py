"""Cells (what to measure) and Records (what was measured): JSON-serialisable dataclasses.

A Record stands on its own: it carries its cell, its status and message, every timing
sample, memory, throughput and the id of the environment it was measured in.
"""

from __future__ import annotations

import hashlib
import json
import math
import typing
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)  # schema-1 records lack the schema-2 fields; their defaults apply
# nonfinite: outputs or loss were NaN/inf before timing, or a task's training diverged
STATUSES = ("ok", "oom", "timeout", "error", "skipped", "nonfinite")
NOT_RUN = "not run"  # kernel_path of a record whose cell ran no known implementation
# a sweep's progress: a cell is done (nothing to retry) or failed (--retry-failed reruns it)
DONE = ("ok", "skipped")
FAILED = tuple(s for s in STATUSES if s not in DONE)


class DamagedRecordWarning(UserWarning):
    """A line of records.jsonl that parsed but is no record (:meth:`Record.problem`).

    Readers skip it and go on; a gate (``compare --fail-on-regression``) must not pass over
    the cell it held, so the warning has its own category to be told apart by."""


@dataclass(frozen=True)
class Cell:
    """One point of a sweep grid."""

    arch: str
    workload: str
    seq_len: int
    batch: int
    preset: str = "small"
    device: str = "cpu"
    dtype: str = "float32"
    compile: str = "none"  # "none" or a torch.compile mode ("default", "reduce-overhead", ...)
    overrides: tuple[tuple[str, Any], ...] = ()  # adapter config overrides, sorted (key, value)

    @property
    def cell_id(self) -> str:
        """Stable identifier: the same cell always gets the same id across runs."""
        payload = json.dumps(self.key_dict(), sort_keys=True)
        short = hashlib.sha1(payload.encode()).hexdigest()[:10]
        return f"{self.arch}/{self.workload}/n{self.seq_len}/b{self.batch}/{self.dtype}/{short}"

    def key_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["overrides"] = dict(self.overrides)
        return d

    @staticmethod
    def make(overrides: dict[str, Any] | None = None, **kw: Any) -> Cell:
        return Cell(overrides=tuple(sorted((overrides or {}).items())), **kw)


@dataclass
class Record:
    """The outcome of one cell. Times are seconds, memory bytes, throughput per second."""

    arch: str
    workload: str
    seq_len: int
    batch: int
    preset: str
    device: str
    dtype: str
    compile: str
    overrides: dict[str, Any]
    cell_id: str
    status: str  # one of STATUSES
    message: str = ""
    schema: int = SCHEMA_VERSION
    run_id: str = ""  # which run directory / environment (env.json) it was measured in
    host: str = ""
    # timing
    time_median_s: float | None = None
    time_iqr_s: float | None = None
    time_min_s: float | None = None
    samples: list[float] = field(default_factory=list)  # every timed sample, seconds
    n_samples: int = 0
    noisy: bool = False  # IQR/median above the noise threshold
    rel_ci: float | None = None  # relative half-width of the median's 95% CI
    warmup_s: float | None = None
    stop_reason: str = ""  # why sampling stopped: "ci" (tight enough), "budget", "max_samples"
    calls_per_sample: int = 1  # tiny calls are batched; every sample is seconds per call
    # memory
    peak_mem_bytes: int | None = None  # CUDA: peak allocated; CPU: peak RSS above baseline
    peak_reserved_bytes: int | None = None  # CUDA caching allocator's peak reserved
    state_bytes: int | None = None  # stream: state / KV cache after seq_len tokens
    # throughput and work
    tokens_per_s: float | None = None
    time_per_token_s: float | None = None
    flops: float | None = None  # per timed call, from torch.utils.flop_counter
    flops_per_s: float | None = None
    params: int | None = None
    # task workloads: curves and final metrics (accuracy, loss, time_to_target_s, ...)
    metrics: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""
    wall_s: float | None = None
    threads: int | None = None  # torch's intra-op thread count in the cell's process
    # --- schema 2 ---
    kernel_path: str = ""  # which implementation ran: "pytorch", or the fused package + version
    precision: str = ""  # float32 matmul/conv policy the cell ran under: "strict" or "tf32"
    rounds: int = 0  # interleaved rounds the samples were taken in
    sample_rounds: list[int] = field(default_factory=list)  # round of each sample
    round_order: list[int] = field(default_factory=list)  # the cell's position in each round
    contention: list[float] = field(default_factory=list)  # others' CPU use (cores) per sample
    contended: bool = False  # enough samples were contended to distrust the cell
    thin: bool = False  # fewer samples than an honest interval needs
    # analytic cost per timed call, from the adapter's formulas (architectures/cost.py):
    # every op counted (FFTs, scans, recurrences included), bytes a lower bound on traffic;
    # None: no formula (a plugin), or a record written before these fields (additive
    # fields with defaults: no schema change, older readers ignore them)
    analytic_flops: float | None = None
    analytic_bytes: float | None = None

    @classmethod
    def for_cell(cls, cell: Cell, status: str, message: str = "", **kw: Any) -> Record:
        """A record of ``cell``; one that did not finish says which implementation ran,
        or ``kernel_path = "not run"`` when none is known (skipped, or failed before)."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; valid choices: {', '.join(STATUSES)}")
        if status != "ok" and not kw.get("kernel_path"):
            kw["kernel_path"] = NOT_RUN
        d = cell.key_dict()
        return cls(**d, cell_id=cell.cell_id, status=status, message=message, **kw)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, allow_nan=False, default=str)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def problem(cls, d: Any) -> str | None:
        """Why ``d`` (a parsed line of records.jsonl) is not a record, or None if it is.

        Readers skip such lines with a warning instead of failing on them later, or
        trusting them: a field missing, of the wrong type, a figure non-finite or negative
        (see :func:`_type_problem`), or an unknown status."""
        why = _fields_problem(cls, d, _FIELD_TYPES)
        if why:
            return why
        if d["status"] not in STATUSES:
            return f"unknown status {d['status']!r}"
        return None


def _fields_problem(cls: type, d: Any, types: dict[str, Any]) -> str | None:
    """Why the parsed line ``d`` does not hold the dataclass ``cls``'s fields: not an
    object, a required field missing, or a field of the wrong type."""
    if not isinstance(d, dict):
        return f"not a JSON object but {type(d).__name__}"
    for f in fields(cls):
        if f.name not in d:
            if f.default is MISSING and f.default_factory is MISSING:
                return f"missing field {f.name!r}"
            continue
        why = _type_problem(d[f.name], types[f.name])
        if why:
            return f"field {f.name!r} {why}"
    return None


def _type_problem(value: Any, kind: Any) -> str | None:
    """Why ``value`` does not fit the annotation ``kind`` (the few kinds Record uses).

    Every number a record or a round holds (a time, a size in bytes, a count, a rate, a
    share of cores) must be finite and non-negative: a negative sample would make a median
    of -1 ms that every ratio then trusts. Zero is allowed: no memory above the baseline,
    no contention, an IQR of identical samples, no samples of a failed cell; a zero median
    is left to whoever divides by it (``compare`` refuses it)."""
    args = typing.get_args(kind)
    origin = typing.get_origin(kind)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _type_problem(value, inner[0]) if len(inner) == 1 else None
    if kind is bool:
        return None if isinstance(value, bool) else f"is {value!r}, not a boolean"
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return _sign_problem(value) if ok else f"is {value!r}, not an integer"
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            return f"is {value!r}, not a number"
        return _sign_problem(value) if math.isfinite(value) else f"is {value!r}, not finite"
    if kind is str:
        return None if isinstance(value, str) else f"is {value!r}, not a string"
    if origin is list:
        if not isinstance(value, list):
            return f"is {type(value).__name__}, not a list"
        for v in value:
            why = _type_problem(v, args[0])
            if why:
                return f"holds an item that {why}"
        return None
    if origin is dict or kind is dict:
        return None if isinstance(value, dict) else f"is {type(value).__name__}, not an object"
    return None


def _sign_problem(value: int | float) -> str | None:
    """A negative figure: no time, size, count or rate a record holds can be one."""
    return f"is {value!r}, negative" if value < 0 else None


_FIELD_TYPES = typing.get_type_hints(Record)


def cells_to_run(cells: Sequence[Cell], known: dict[str, Record],
                 retry_failed: bool) -> list[Cell]:
    """The one answer to "what is left": cells with no record, and (``retry_failed``)
    those whose latest record is not ok. Launchers and the runner all ask it."""
    return [c for c in cells
            if c.cell_id not in known or (retry_failed and known[c.cell_id].status != "ok")]


@dataclass(frozen=True)
class RoundEntry:
    """A finished round of a cell as ``rounds.jsonl`` keeps it (the fields a resume pools;
    the worker's other fields ride along in the line). A line that fails :meth:`problem`
    is set aside by readers, and its round is measured again."""

    cell_id: str
    round: int
    samples: list[float]
    k: int
    contention: list[float] = field(default_factory=list)
    static: dict[str, Any] | None = None  # the cell's setup measurements (round 0)
    position: int = 0
    wall_s: float | None = None

    @classmethod
    def problem(cls, d: Any) -> str | None:
        """Why ``d`` (a parsed line of rounds.jsonl) is not a round, or None if it is:
        a field missing or mistyped, a non-finite or negative figure (as for a record),
        no samples or calls, round 0 without its setup (``static``)."""
        why = _fields_problem(cls, d, _ROUND_TYPES)
        if why:
            return why
        if d["k"] < 1 or not d["samples"]:
            return f"round {d['round']}, k {d['k']}, {len(d['samples'])} samples"
        if d["round"] == 0 and not isinstance(d.get("static"), dict):
            return "round 0 without its setup ('static')"
        return None


_ROUND_TYPES = typing.get_type_hints(RoundEntry)
