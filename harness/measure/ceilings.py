"""The machine's ceilings: the best FLOP/s and memory bandwidth one cell process can get on
a device, in the run's dtype, thread count and float32 policy, measured once per host,
torch version, device, dtype, threads and policy; on CUDA beside the datasheet figures of
the detected SKU.

What is measured, each the **best** of repeated timed calls (a roof is what the machine
can do, so a call slowed by other load or a clock dip does not lower it):

- ``peak_flops``: ``torch.mm`` of two n×n matrices, 2n³ FLOPs a call (n = 1024 on up to
  four CPU threads, 2048 beyond, 8192 on CUDA);
- ``bandwidth`` (DRAM, HBM on a GPU): a streaming copy ``dst.copy_(src)`` and an add
  ``torch.add(a, b, out=c)`` of tensors four times the last-level cache (64-512 MiB each on
  a CPU, 1 GiB on CUDA), counted as **bytes read + bytes written** (copy: 2, add: 3 times
  one tensor's bytes; a CPU's write-allocate reads are not counted, as an analytic byte
  count does not count them); the better of the two;
- ``cache_bandwidth``: the same copy of cache-sized tensors (CPU: 32 KiB-2 MiB, CUDA:
  4-16 MiB, inside L2), the best size: the roof of a cell whose working set stays in cache.

On a CPU it takes at most :data:`CPU_BUDGET_S` seconds, in the process that calls it, with
``threads`` torch threads (restored after), while the CPUs' other use is read from
``/proc/stat``: a measurement that other processes contended (above
:data:`CONTENDED_CORES` cores) is kept for this run but not cached.

Cached in the user's cache directory (``$SEQBENCH_CACHE_DIR``, else
``$XDG_CACHE_HOME/seqbench``, else ``~/.cache/seqbench``; file ``ceilings.json``), one entry
per :meth:`Ceilings.key`: a run directory is one run, while the machine outlives it, so a
second run on the same host, torch and settings reads its ceilings instead of paying up to
five seconds again. Each run still stores the ceilings it used in its own ``env.json``
(the report reads them from there, wherever it is built). ``SEQBENCH_CEILINGS=remeasure``
ignores the cache (and replaces its entry); ``SEQBENCH_CEILINGS=off`` measures nothing.

CUDA datasheets (``datasheets.toml``): the SKU is read from ``torch.cuda.get_device_name()``
and matched exactly (:func:`detect_sku`); an unlisted name, or a MIG slice, has none.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import torch

from harness.measure.contention import others_cores, read_cpu_times

CPU_BUDGET_S = 5.0  # the most a CPU measurement may take, allocation included
CUDA_BUDGET_S = 6.0
CONTENDED_CORES = 0.5  # others' CPU use above which a measurement is not cached
MODES = ("cache", "remeasure", "off")
MIB = 1 << 20


# ---------------------------------------------------------------- datasheets


@dataclass(frozen=True)
class Datasheet:
    """One SKU's datasheet figures (dense), in FLOP/s and bytes/s, and where they are from."""

    sku: str
    names: tuple[str, ...]
    fp32: float
    tf32: float
    bf16: float
    fp16: float
    memory: float
    source: str
    url: str
    sparse: str = ""

    def flops_for(self, dtype: str, precision: str = "strict") -> tuple[float, str] | None:
        """The datasheet's compute roof for ``dtype`` under the float32 ``precision``
        policy, with its label; None for a dtype the datasheet does not list."""
        if dtype == "float32":
            return (self.tf32, "TF32 tensor core") if precision == "tf32" else (
                self.fp32, "FP32")
        if dtype == "bfloat16":
            return self.bf16, "BF16 tensor core"
        if dtype == "float16":
            return self.fp16, "FP16 tensor core"
        return None


def load_datasheets(text: str | None = None) -> list[Datasheet]:
    """The SKUs of ``datasheets.toml`` (or of ``text``), TFLOP/s and TB/s made SI."""
    if text is None:
        text = resources.files("harness.measure").joinpath("datasheets.toml").read_text()
    out = []
    for s in tomllib.loads(text)["sku"]:
        out.append(Datasheet(
            sku=s["id"], names=tuple(s["names"]),
            **{k: float(s[k]) * 1e12 for k in ("fp32", "tf32", "bf16", "fp16", "memory")},
            source=s["source"], url=s["url"], sparse=s.get("sparse", "")))
    return out


def _canon(name: str) -> str:
    n = " ".join(name.strip().lower().split())
    return n[len("nvidia "):] if n.startswith("nvidia ") else n


def detect_sku(device_name: str,
               sheets: Iterable[Datasheet] | None = None) -> tuple[Datasheet | None, str]:
    """The datasheet of the GPU ``device_name`` (a ``torch.cuda.get_device_name()``
    string) and a note; ``(None, why)`` when the name is not one listed, never a guess."""
    sheets = load_datasheets() if sheets is None else sheets
    name = _canon(device_name)
    if " mig " in f" {name} " or name.startswith("mig"):
        return None, (f"no datasheet: {device_name!r} is a MIG slice (a share of the GPU's "
                      "compute and bandwidth)")
    for sheet in sheets:
        if name in {_canon(n) for n in sheet.names}:
            return sheet, f"datasheet of {sheet.sku} (from the device name {device_name!r})"
    return None, (f"no datasheet: {device_name!r} is not a listed SKU "
                  "(harness/measure/datasheets.toml)")


# ---------------------------------------------------------------- the record


@dataclass
class Ceilings:
    """The roofs of one device, dtype, thread count and float32 policy (bytes/s, FLOP/s).

    ``method`` says how each figure was measured; ``datasheet`` (CUDA) holds the detected
    SKU's figures with their source, or is None with ``datasheet_note`` saying why."""

    device: str  # "cpu", "cuda:0", ...
    device_name: str
    dtype: str
    threads: int
    precision: str
    peak_flops: float
    bandwidth: float
    cache_bandwidth: float
    torch: str
    host: str = ""
    measured_at: str = ""
    seconds: float = 0.0
    others_cores: float | None = None  # other processes' CPU use while it measured
    method: dict[str, str] = field(default_factory=dict)
    datasheet: dict[str, Any] | None = None
    datasheet_note: str = ""
    cached: bool = False  # read from the cache rather than measured by this run

    @property
    def kind(self) -> str:
        return self.device.split(":")[0]

    def key(self) -> str:
        """What makes two measurements interchangeable: host, device model, torch, dtype,
        threads (CPU only) and float32 policy (CUDA float32 only)."""
        return key_of(self.host, self.device_name, self.torch, self.kind, self.dtype,
                      self.threads, self.precision)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Ceilings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def key_of(host: str, device_name: str, torch_version: str, kind: str, dtype: str,
           threads: int, precision: str) -> str:
    threads_part = f"{threads} threads" if kind == "cpu" else "-"
    policy = precision if kind == "cuda" and dtype == "float32" else "-"
    return "|".join([host, device_name, f"torch {torch_version}", kind, dtype, threads_part,
                     policy])


def match(entries: Iterable[dict[str, Any]], device: str, dtype: str, threads: int | None,
          precision: str = "strict") -> Ceilings | None:
    """The stored ceilings (``env.json``'s ``ceilings``) that hold for a record measured on
    ``device`` in ``dtype`` with ``threads`` torch threads under ``precision``; None if
    none does (a CPU's roofs at another thread count are not this cell's)."""
    kind = device.split(":")[0]
    for d in entries or ():
        if not isinstance(d, dict) or "peak_flops" not in d:
            continue
        c = Ceilings.from_dict(d)
        if c.kind != kind or c.dtype != dtype:
            continue
        if kind == "cpu" and threads is not None and c.threads != threads:
            continue
        if kind == "cuda" and dtype == "float32" and (precision or "strict") != c.precision:
            continue
        return c
    return None


# ---------------------------------------------------------------- clocks


class Clock(Protocol):
    def seconds_per_call(self, fn: Callable[[], object], reps: int) -> float: ...


class CpuClock:
    """Host wall clock around ``reps`` calls."""

    def seconds_per_call(self, fn: Callable[[], object], reps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) / reps


class CudaClock:
    """A pair of CUDA events on the device's current stream around ``reps`` calls; the end
    event is waited for before ``elapsed_time`` is read (the API's rule)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def seconds_per_call(self, fn: Callable[[], object], reps: int) -> float:
        stream = torch.cuda.current_stream(self.device)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(self.device)
        start.record(stream)
        for _ in range(reps):
            fn()
        end.record(stream)
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / reps


def best_seconds(fn: Callable[[], object], clock: Clock, budget_s: float,
                 batch_s: float = 0.02) -> tuple[float, int]:
    """The fewest seconds one call of ``fn`` took, over batches of back-to-back calls
    (each about ``batch_s``) within ``budget_s`` after one warm-up call; and the calls."""
    t0 = time.perf_counter()
    first = clock.seconds_per_call(fn, 1)
    best, calls = first, 1
    reps = max(1, min(10_000, int(batch_s / max(first, 1e-9))))
    while time.perf_counter() - t0 + best * reps < budget_s or calls < 2:
        if time.perf_counter() - t0 > 2 * budget_s:  # one call is longer than the budget
            break
        best = min(best, clock.seconds_per_call(fn, reps))
        calls += reps
    return best, calls


# ---------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Plan:
    """What to run: the matmul size, the streaming tensor size, cache-sized copies, and
    the time given to each (seconds)."""

    matmul_n: int
    stream_bytes: int
    cache_bytes: tuple[int, ...]
    matmul_s: float
    stream_s: float  # each of copy and add
    cache_s: float  # each size


def last_level_cache_bytes() -> int | None:
    """The largest CPU cache this machine reports (Linux sysfs), or None."""
    sizes = []
    for f in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        try:
            text = f.read_text().strip().upper()
        except OSError:
            continue
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * mult)
    return max(sizes) if sizes else None


def plan_for(kind: str, threads: int) -> Plan:
    if kind == "cuda":
        return Plan(8192, 1 << 30, (4 * MIB, 8 * MIB, 16 * MIB), 1.5, 1.0, 0.5)
    llc = last_level_cache_bytes() or 32 * MIB
    stream = min(512 * MIB, max(64 * MIB, 4 * llc))
    # 1.2 + 2 x 0.6 + 4 x 0.2 = 3.2 s of timing; allocation and warm-up calls fit in the rest
    return Plan(1024 if threads <= 4 else 2048, stream, (32 << 10, 128 << 10, 512 << 10, 2 * MIB),
                1.2, 0.6, 0.2)


def _size(nbytes: int) -> str:
    return f"{nbytes / MIB:g} MiB" if nbytes >= MIB else f"{nbytes >> 10} KiB"


# ---------------------------------------------------------------- measuring


def _peak(dev: torch.device, dt: torch.dtype, n: int, clock: Clock,
          budget_s: float) -> tuple[float, int]:
    """Best FLOP/s of an n×n matmul, and the calls it rests on."""
    a = torch.ones(n, n, dtype=dt, device=dev)
    b = torch.ones(n, n, dtype=dt, device=dev)
    out = torch.empty(n, n, dtype=dt, device=dev)
    s, calls = best_seconds(lambda: torch.mm(a, b, out=out), clock, budget_s)
    return 2.0 * n**3 / s, calls


def _stream(dev: torch.device, dt: torch.dtype, numel: int, clock: Clock, budget_s: float,
            op: str, batch_s: float = 0.02) -> tuple[float, int]:
    """Best bytes/s (read + written) of a copy or an add of ``numel``-element tensors."""
    src = torch.ones(numel, dtype=dt, device=dev)
    dst = torch.empty_like(src)
    item = src.element_size()
    if op == "copy":
        s, calls = best_seconds(lambda: dst.copy_(src), clock, budget_s, batch_s)
        return 2 * numel * item / s, calls
    other = torch.ones_like(src)
    s, calls = best_seconds(lambda: torch.add(src, other, out=dst), clock, budget_s, batch_s)
    return 3 * numel * item / s, calls


def measure_with(tensor_device: torch.device, clock: Clock, plan: Plan, dtype: str
                 ) -> tuple[float, float, float, dict[str, str]]:
    """(peak FLOP/s, bandwidth, cache bandwidth, method) of the ops of ``plan`` on tensors
    of ``tensor_device``, timed by ``clock``."""
    dt = getattr(torch, dtype)
    item = torch.empty((), dtype=dt).element_size()
    n = plan.matmul_n
    peak, calls = _peak(tensor_device, dt, n, clock, plan.matmul_s)
    method = {"peak_flops": f"torch.mm {n}x{n} @ {n}x{n} {dtype}, 2n^3 FLOPs a call, "
                            f"best of {calls} calls"}

    numel = plan.stream_bytes // item
    copy_bw, calls_copy = _stream(tensor_device, dt, numel, clock, plan.stream_s, "copy")
    add_bw, calls_add = _stream(tensor_device, dt, numel, clock, plan.stream_s, "add")
    size = _size(numel * item)
    method["bandwidth"] = (
        f"the better of a copy of {size} (bytes read + written = 2 x {size}): "
        f"{copy_bw / 1e9:.1f} GB/s, best of {calls_copy} calls, and an add c = a + b of "
        f"{size} tensors (read + written = 3 x {size}): {add_bw / 1e9:.1f} GB/s, best of "
        f"{calls_add} calls")

    rates = {nbytes: _stream(tensor_device, dt, max(1, nbytes // item), clock, plan.cache_s,
                             "copy", batch_s=0.01)[0]
             for nbytes in plan.cache_bytes}
    best_size = max(rates, key=rates.__getitem__)
    method["cache_bandwidth"] = (
        "the best copy (bytes read + written) of cache-sized tensors: "
        + ", ".join(f"{_size(b)} {r / 1e9:.1f} GB/s" for b, r in rates.items())
        + f"; best at {_size(best_size)}")
    return peak, max(copy_bw, add_bw), rates[best_size], method


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return "cpu: " + line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu: " + (platform.processor() or platform.machine())


def measure(device: str = "cpu", dtype: str = "float32", threads: int = 0,
            precision: str = "strict", *, device_name: str | None = None,
            plan: Plan | None = None) -> Ceilings:
    """Measure the ceilings of ``device`` now (no cache): ``threads`` torch threads on a CPU
    (0: the current count), ``precision`` the float32 policy on CUDA (``tf32`` allows TF32
    in the matmul)."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    threads = threads or torch.get_num_threads()
    plan = plan or plan_for(dev.type, threads)
    t0 = time.perf_counter()
    before_threads = torch.get_num_threads()
    before_tf32 = torch.backends.cuda.matmul.allow_tf32
    cpu_before = read_cpu_times() if dev.type == "cpu" else None
    try:
        if dev.type == "cpu":
            torch.set_num_threads(threads)
            clock: Clock = CpuClock()
            name = device_name or _cpu_name()
        else:
            torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
            clock = CudaClock(dev)
            name = device_name or torch.cuda.get_device_name(dev)
        peak, bw, cache_bw, method = measure_with(dev, clock, plan, dtype)
    finally:
        torch.set_num_threads(before_threads)
        torch.backends.cuda.matmul.allow_tf32 = before_tf32
    cpu_after = read_cpu_times() if cpu_before is not None else None
    others = (round(others_cores(cpu_before, cpu_after), 3)
              if cpu_before is not None and cpu_after is not None else None)
    ceil = Ceilings(
        device=str(dev), device_name=name, dtype=dtype, threads=threads,
        precision=precision, peak_flops=peak, bandwidth=bw, cache_bandwidth=cache_bw,
        torch=torch.__version__, host=socket.gethostname(),
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - t0, 3), others_cores=others, method=method)
    if dev.type == "cuda":
        attach_datasheet(ceil)
    return ceil


def attach_datasheet(ceil: Ceilings) -> Ceilings:
    """Put the detected SKU's datasheet figures (for the ceilings' dtype) beside them."""
    sheet, note = detect_sku(ceil.device_name)
    ceil.datasheet_note = note
    if sheet is None:
        ceil.datasheet = None
        return ceil
    roof = sheet.flops_for(ceil.dtype, ceil.precision)
    ceil.datasheet = {
        "sku": sheet.sku,
        "peak_flops": roof[0] if roof else None,
        "peak_label": roof[1] if roof else f"no {ceil.dtype} figure",
        "bandwidth": sheet.memory,
        "fp32": sheet.fp32, "tf32": sheet.tf32, "bf16": sheet.bf16, "fp16": sheet.fp16,
        "sparse": sheet.sparse, "source": sheet.source, "url": sheet.url,
    }
    return ceil


# ---------------------------------------------------------------- the cache


def cache_path() -> Path:
    root = os.environ.get("SEQBENCH_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                 ".cache")
        root = os.path.join(base, "seqbench")
    return Path(root) / "ceilings.json"


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or damaged: measured again and rewritten
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, entry: Ceilings) -> None:
    """Add ``entry`` to the cache file (whole or not at all; a failure only costs a
    measurement next time)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read_cache(path)
        data[entry.key()] = {**entry.to_dict(), "cached": False}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ceilings.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True, allow_nan=False)
        os.replace(tmp, path)
    except (OSError, ValueError):
        pass


def mode() -> str:
    """``SEQBENCH_CEILINGS``: ``cache`` (default), ``remeasure`` or ``off``."""
    m = os.environ.get("SEQBENCH_CEILINGS", "").strip().lower() or "cache"
    if m not in MODES:
        raise ValueError(f"SEQBENCH_CEILINGS={m!r}; valid choices: {', '.join(MODES)}")
    return m


def ceilings(device: str = "cpu", dtype: str = "float32", threads: int = 0,
             precision: str = "strict", *, device_name: str | None = None,
             path: Path | None = None, how: str | None = None) -> Ceilings | None:
    """This host's ceilings for ``device``/``dtype``/``threads``/``precision``: from the
    cache when it holds them, else measured (and cached unless contended). None when
    ``how`` (default: ``SEQBENCH_CEILINGS``) is ``off``."""
    how = how or mode()
    if how == "off":
        return None
    path = path or cache_path()
    dev = torch.device(device)
    kind = dev.type
    threads = threads or torch.get_num_threads()
    if device_name is None:
        device_name = (torch.cuda.get_device_name(dev) if kind == "cuda" else _cpu_name())
    key = key_of(socket.gethostname(), device_name, torch.__version__, kind, dtype, threads,
                 precision)
    if how == "cache":
        hit = _read_cache(path).get(key)
        if isinstance(hit, dict):
            try:
                c = Ceilings.from_dict(hit)
                if all(math.isfinite(v) and v > 0 for v in
                       (c.peak_flops, c.bandwidth, c.cache_bandwidth)):
                    c.device, c.cached = str(device), True
                    return attach_datasheet(c) if kind == "cuda" else c
            except (TypeError, ValueError):
                pass  # damaged entry: measured again
    c = measure(device, dtype, threads, precision, device_name=device_name)
    if c.others_cores is None or c.others_cores <= CONTENDED_CORES:
        _write_cache(path, c)
    else:
        c.method["cache"] = (f"not cached: other processes used {c.others_cores:.2f} cores "
                             "while it measured")
    return c
