"""Where a step's time goes: operator self-times grouped into a few categories.

Categories are decided by operator name (``aten::mm`` → matmul), so the same table
reads the same on CPU and GPU. On CPU the time of a category is the operators' self CPU
time; on CUDA it is the self device (kernel) time of the operators that launched the
kernels. The rest of the step's wall time is "overhead": on CPU, time outside any
compute operator (Python, the autograd engine, the dispatcher, tensor metadata such as
``view``); on CUDA, time the device sat idle waiting for the host to launch work.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.errors import UsageError

# display order: compute first, then data movement, then what is left
CATEGORIES = (
    "FFT",
    "matmul/GEMM",
    "convolution",
    "fused RNN",
    "elementwise",
    "reduction/norm",
    "memory copies",
    "overhead",
    "other",
)
OVERHEAD = "overhead"
OTHER = "other"
CATEGORY_HELP = {
    "FFT": "aten::_fft_r2c/_fft_c2r/_fft_c2c and other *fft* operators",
    "matmul/GEMM": "mm, addmm, bmm, linear, matmul, scaled-dot-product attention",
    "convolution": "conv1d/2d, convolution and their backward kernels",
    "fused RNN": "recurrent kernels (oneDNN/cuDNN LSTM, GRU): GEMMs and gates in one op",
    "elementwise": "pointwise arithmetic, activations and their backward, optimizer updates",
    "reduction/norm": "sum/mean/max, softmax, layer/batch/RMS norm, losses, cumsum, scans",
    "memory copies": "copy_, cat, clone, fill_/zeros, allocation, gather/scatter, memcpy/memset",
    "overhead": "step wall time outside compute operators (CPU) or device idle time (CUDA)",
    "other": "operators matching no rule, and device time not attributed to an operator",
}

_ELEMENTWISE = (
    r"add|sub|rsub|mul|div|true_divide|neg|abs|sign|exp|exp2|expm1|log|log1p|log2|pow|sqrt"
    r"|rsqrt|reciprocal|square|tanh|sigmoid|relu|relu6|gelu|silu|mish|elu|selu|celu|softplus"
    r"|hardtanh|hardswish|hardsigmoid|leaky_relu|threshold|clamp|clamp_min|clamp_max|clip"
    r"|where|lerp|addcmul|addcdiv|maximum|minimum|fmax|fmin|sin|cos|tan|erf|erfc|floor|ceil"
    r"|round|trunc|frac|remainder|fmod|masked_fill|dropout|native_dropout|bernoulli|eq|ne|lt"
    r"|le|gt|ge|logical_and|logical_or|logical_not|bitwise_and|bitwise_or|complex|polar"
    r"|conj_physical|_conj_physical|sgn|angle|glu|logit|xlogy|nan_to_num|isnan|isinf|logaddexp"
)
# (category, regex on the operator name without its "aten::" prefix); first match wins
RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("FFT", re.compile(r"fft")),
    ("convolution", re.compile(r"conv(olution)?(\d|_|$)|cudnn_conv|slow_conv|conv_depthwise")),
    ("fused RNN", re.compile(
        r"^(lstm|gru|rnn_tanh|rnn_relu|_cudnn_rnn\w*|mkldnn_rnn_layer\w*|miopen_rnn\w*"
        r"|_thnn_fused_(lstm|gru)_cell\w*|lstm_cell|gru_cell|rnn_tanh_cell|rnn_relu_cell)$")),
    ("matmul/GEMM", re.compile(
        r"^(mm|addmm|_addmm_activation|bmm|baddbmm|addbmm|matmul|linear|mv|addmv|dot|vdot"
        r"|einsum|tensordot|inner|outer|ger|addr|_int_mm|_scaled_mm|linear_backward"
        r"|_?scaled_dot_product\w*|_efficient_attention\w*|_flash_attention\w*)$")),
    ("reduction/norm", re.compile(
        r"^(sum|mean|prod|max|min|amax|amin|aminmax|argmax|argmin|norm|linalg_vector_norm"
        r"|std|var|var_mean|std_mean|logsumexp|_?logcumsumexp|cumsum|cumprod|cummax|topk|sort"
        r"|all|any"
        r"|_?softmax|_?log_softmax|_?softmax_backward_data|_?log_softmax_backward_data"
        r"|layer_norm|native_layer_norm|native_layer_norm_backward|batch_norm|native_batch_norm"
        r"|native_batch_norm_backward|_batch_norm\w*|group_norm|native_group_norm\w*|rms_norm"
        r"|_fused_rms_norm\w*|mse_loss|mse_loss_backward|cross_entropy_loss|nll_loss\w*"
        r"|l1_loss|smooth_l1_loss\w*|_foreach_norm)_?$")),
    ("memory copies", re.compile(
        r"^(copy_|_copy_from|_copy_from_and_resize|_to_copy|to|clone|contiguous|cat|_cat|concat"
        r"|stack|hstack|vstack|fill_|zero_|zeros|zeros_like|ones|ones_like|full|full_like|empty"
        r"|empty_like|empty_strided|new_empty|new_empty_strided|new_zeros|new_ones|new_full"
        r"|resize_|index_select|gather|scatter\w*|index|index_put_?|_index_put_impl_|index_add_?"
        r"|index_copy_?|masked_select|masked_scatter_?|take|constant_pad_nd|pad|_pad\w*"
        r"|reflection_pad\w*|replication_pad\w*|roll|flip|repeat|repeat_interleave|tile"
        r"|narrow_copy|slice_backward|select_backward|index_select_backward|unfold_backward"
        r"|as_strided_scatter|slice_scatter|select_scatter|tril|triu|embedding"
        r"|embedding_dense_backward|memcpy\w*|memset\w*|_foreach_copy_|_foreach_zero_)$")),
    (OVERHEAD, re.compile(  # tensor metadata only: no data is read or written
        r"^(view|_view|reshape|_reshape_alias|_unsafe_view|as_strided|slice|select|narrow"
        r"|transpose|t|permute|expand|expand_as|unsqueeze|squeeze|flatten|unflatten|split"
        r"|split_with_sizes|chunk|unbind|detach|detach_|alias|lift_fresh|view_as|view_as_real"
        r"|view_as_complex|_neg_view|_conj|conj|resolve_conj|resolve_neg|numpy_t|real|imag"
        r"|unfold|movedim|moveaxis|swapaxes|diagonal|result_type|is_nonzero|item"
        r"|_local_scalar_dense|set_|requires_grad_|_has_compatible_shallow_copy_type)$")),
    ("elementwise", re.compile(rf"^(_foreach_\w+|({_ELEMENTWISE})_?(_backward)?(\.\w+)?)$")),
)


def categorize(op: str) -> str | None:
    """The category of operator ``op``, or None for a non-operator event (autograd
    engine, Python function, user annotation), whose self time counts as overhead."""
    name = op.strip()
    if name.startswith("aten::"):
        name = name[len("aten::"):]
    elif name.lower().startswith(("memcpy", "memset")):
        return "memory copies"
    else:
        return None
    for category, rule in RULES:
        if rule.search(name):
            return category
    return OTHER


@dataclass(frozen=True)
class StepTimes:
    """One profiled cell's timing facts, all per step (seconds)."""

    step_wall_s: float  # mean wall time of an active profiler step
    device_kind: str  # "cpu" or "cuda"
    device_busy_s: float | None = None  # CUDA: summed kernel/memcpy/memset time


def breakdown(ops: pd.DataFrame, times: StepTimes) -> pd.Series:
    """Seconds per step in each category (index: CATEGORIES), summing to the step wall.

    ``ops`` has one row per operator with ``op``, ``self_cpu_s`` and ``self_device_s``
    (per step). Categories never go negative: if operators' self times exceed the wall
    (timer granularity), overhead is 0 and the total is their sum.
    """
    out = pd.Series(0.0, index=list(CATEGORIES))
    column = "self_device_s" if times.device_kind == "cuda" else "self_cpu_s"
    for op, seconds in zip(ops["op"], ops[column], strict=True):
        category = categorize(op)
        if category is not None and category != OVERHEAD:
            out[category] += float(seconds)
        elif category == OVERHEAD and times.device_kind == "cpu":
            out[OVERHEAD] += float(seconds)
    if times.device_kind == "cuda":
        busy = times.device_busy_s if times.device_busy_s is not None else out.sum()
        out[OTHER] += max(busy - out.sum(), 0.0)  # kernels launched outside any operator
        out[OVERHEAD] = max(times.step_wall_s - busy, 0.0)
    else:
        out[OVERHEAD] += max(times.step_wall_s - out.sum(), 0.0)
    return out


# ---------------------------------------------------------------- tables across cells

ID_COLUMNS = ("arch", "workload", "seq_len", "batch", "preset", "device", "dtype", "compile")
BREAKDOWN_FILE = "breakdown.csv"


def long_rows(cell_fields: dict, parts: pd.Series) -> pd.DataFrame:
    """One row per category: the cell's identifying fields, ``time_ms`` and ``share``."""
    total = float(parts.sum())
    rows = [
        {**{k: cell_fields[k] for k in ID_COLUMNS}, "category": c, "time_ms": 1e3 * float(s),
         "share": float(s) / total if total > 0 else 0.0}
        for c, s in parts.items()
    ]
    return pd.DataFrame(rows)


def _profile_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Every per-cell breakdown.csv under ``paths`` (profile or run directories)."""
    files: list[Path] = []
    for p in paths:
        root = Path(p)
        if not root.exists():
            raise UsageError(f"profile directory {str(p)!r} does not exist")
        if root.is_file():
            files.append(root)
            continue
        # a cell directory holds profile.json beside its breakdown.csv; run-level
        # breakdown.csv files are aggregates and are skipped so nothing counts twice
        files.extend(f for f in sorted(root.rglob(BREAKDOWN_FILE))
                     if (f.parent / "profile.json").exists())
    return files


def breakdown_table(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]
                    ) -> pd.DataFrame:
    """The category breakdown of every profiled cell under ``paths``, in long form.

    ``paths``: profile directories (``results/profiles/<run>``), run directories (their
    ``profiles/`` are searched) or single cell directories. Columns: the cell fields
    (arch, workload, seq_len, batch, preset, device, dtype, compile), ``category``,
    ``time_ms`` (per step) and ``share`` of the step. Empty when nothing was profiled.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    frames = [pd.read_csv(f) for f in _profile_files(paths)]
    if not frames:
        return pd.DataFrame(columns=[*ID_COLUMNS, "category", "time_ms", "share"])
    df = pd.concat(frames, ignore_index=True)
    df["category"] = pd.Categorical(df["category"], categories=list(CATEGORIES), ordered=True)
    return df.sort_values([*ID_COLUMNS, "category"], kind="stable").reset_index(drop=True)


def wide_table(long: pd.DataFrame, value: str = "time_ms") -> pd.DataFrame:
    """One row per cell, one column per category (``time_ms`` or ``share``), plus total."""
    keys = [c for c in ID_COLUMNS if long[c].nunique() > 1] or ["arch"]
    keys = list(dict.fromkeys(["arch", "seq_len", *keys]))
    wide = long.pivot_table(index=keys, columns="category", values=value, aggfunc="sum",
                            observed=False).reindex(columns=list(CATEGORIES))
    wide.columns = [str(c) for c in wide.columns]
    wide = wide.loc[:, (wide.fillna(0) != 0).any(axis=0)]
    if value == "time_ms":
        wide["total"] = wide.sum(axis=1)
    return wide


def markdown(long: pd.DataFrame) -> str:
    """A Markdown table: ms per step and, in brackets, the share of the step."""
    ms, share = wide_table(long, "time_ms"), wide_table(long, "share")
    cells = ms.copy().astype(object)
    for col in ms.columns:
        for idx in ms.index:
            v = ms.loc[idx, col]
            cells.loc[idx, col] = (f"{v:.2f}" if col == "total"
                                   else f"{v:.2f} ({100 * share.loc[idx, col]:.0f}%)")
    head = [*ms.index.names, *ms.columns]
    lines = ["| " + " | ".join(map(str, head)) + " |",
             "|" + "|".join("---" if i < ms.index.nlevels else "---:" for i in range(len(head)))
             + "|"]
    for idx, row in cells.iterrows():
        idx = idx if isinstance(idx, tuple) else (idx,)
        lines.append("| " + " | ".join(map(str, [*idx, *row.tolist()])) + " |")
    return "\n".join(lines) + "\n"
