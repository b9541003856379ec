"""What runs inside a cell's own process: build, prepare, measure rounds, report back.

Each cell gets a fresh process (forked from a server that has torch imported, so it
starts in tens of milliseconds): one cell's crash, leak or allocator state never touches
another's, and CPU memory is measured against a clean baseline. The process stays warm
between its interleaved rounds (the runner decides, within a memory budget), so a later
round costs a brief re-warm, not a rebuild.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import torch

import workloads
from architectures.optional import KernelLog, kernel_log
from harness.errors import describe
from harness.measure.flops import analytic_cost, count_flops
from harness.measure.headline import HEADLINE_MIN_SAMPLES
from harness.measure.memory import MemoryTracker
from harness.measure.overhead import bare_overhead
from harness.measure.timing import Measurement, Timer, TimingConfig
from harness.run import forkserver
from harness.run.cell import Placement, build_model, enter_cell, prepare_timed
from harness.run.checks import CallCheck, ChangedInput, NonFinite, check_finite
from harness.run.messages import CellRecord, RoundCommand, RoundDone
from harness.run.plugins import load_plugins
from harness.run.rounds import Pool, pooled_fields, samples_needed
from harness.run.settings import RunSettings
from harness.store.records import Cell, Record

OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in OOM_MARKERS)


def failure(exc: BaseException) -> tuple[str, str]:
    """The status and message of a cell that raised ``exc``."""
    if isinstance(exc, NonFinite):
        return "nonfinite", f"non-finite: {exc}"
    if isinstance(exc, ChangedInput):
        return "error", f"changed input: {exc}"
    return ("oom" if is_oom(exc) else "error"), describe(exc)


@dataclass
class Prepared:
    """A timed cell ready to sample: its step and what its setup measured."""

    run: Callable[[], object]
    device: torch.device
    static: dict[str, Any]  # params, memory, flops, tokens, per_token, state_bytes
    check: CallCheck | None = None  # ``run``'s checks: after each sample, each round


def prepare_cell(cell: Cell, settings: RunSettings, *, count: bool = True) -> Prepared:
    """Build, move, compile and prepare ``cell`` (a timed workload), run its first call.

    ``count=False`` skips FLOP counting (a cell prepared again for a later round: its
    round 0 counted them, and counting runs the call under a dispatch mode, several
    times slower for a step-by-step model)."""
    at = enter_cell(cell, settings.seed, settings.precision)
    device = at.device
    with MemoryTracker(device) as mem, kernel_log() as kernels:
        prep, params = prepare_timed(cell, at, settings.seed)
        # the first call, inside the tracker (activations, grads, optimizer state), with
        # its FLOPs counted: no extra call is spent on counting. Not for a compiled model:
        # dynamo does not compile under an active dispatch mode (FlopCounterMode) and marks
        # the frame skipped, so the cell would time eager code.
        first: list[Any] = []  # the first call's outputs (or loss), checked before timing

        def run_once() -> Any:
            first.append(prep.run())
            return first[-1]

        counting = count and settings.count_flops and prep.count_flops
        compiled = cell.compile != "none"
        flops = count_flops(run_once) if counting and not compiled else None
        if flops is None:
            run_once()  # not counted (or counting failed part-way): the plain first call
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        check_finite(first[-1])
    if counting and compiled:
        flops = _eager_flops(prep.run)
    # the workload's formula over the cell's shape: no dispatch pass, so always
    analytic_flops, analytic_bytes = analytic_cost(prep.cost)
    static: dict[str, Any] = dict(
        **_kernel_fields(kernels, settings),
        params=params,
        peak_mem_bytes=mem.peak_bytes,
        peak_reserved_bytes=mem.reserved_bytes,
        flops=flops,
        analytic_flops=analytic_flops,
        analytic_bytes=analytic_bytes,
        tokens=prep.tokens,
        per_token=cell.seq_len if workloads.info(cell.workload).per_token else None,
    )
    if "state_bytes" in prep.extras:
        static["state_bytes"] = int(prep.extras["state_bytes"])
    checked = CallCheck(prep.run, prep.inputs)  # after the tracker: its input copies
    return Prepared(checked, device, static, checked)


def _eager_flops(run: Callable[[], object]) -> float | None:
    """FLOPs of one call of a compiled model run eagerly (``set_stance("force_eager")``,
    torch >= 2.6), counted after compilation so it cannot stop it; None without it."""
    set_stance = getattr(torch.compiler, "set_stance", None)
    if set_stance is None:
        return None
    with set_stance("force_eager"):
        return count_flops(run)


def _kernel_fields(kernels: KernelLog, settings: RunSettings) -> dict[str, Any]:
    """Which implementation ran (fused package + version, or "pytorch"), under which
    float32 policy, and why an installed fused kernel was not used (for the message)."""
    return dict(kernel_path=kernels.path, precision=settings.precision,
                kernel_note=kernels.note())


def measure_round(
    p: Prepared,
    settings: RunSettings,
    *,
    round_index: int,
    taken: int,
    calls_per_sample: int | None,
    warmup: str,
) -> RoundDone:
    """One round of a cell's samples: ``budget_s / rounds`` of sampling, and at least the
    samples still due for the cell to end with ``HEADLINE_MIN_SAMPLES`` (``harness.run.rounds``).
    Its ``wall_s`` and ``static`` are the caller's to fill in."""
    config = replace(
        settings.timing(),
        budget_s=settings.budget_s / settings.rounds,
        required_samples=samples_needed(taken, round_index, settings.rounds, HEADLINE_MIN_SAMPLES),
    )
    m = Timer(p.run, p.device, config, check=p.check.verify if p.check else None).measure(
        warmup=warmup, calls_per_sample=calls_per_sample)
    if p.check:
        p.check.compare()
    return RoundDone(
        round=round_index,
        samples=list(m.samples),
        contention=list(m.contention),
        k=m.calls_per_sample,
        warmup_s=m.warmup_s,
        stop_reason=m.stop_reason,
        threads=torch.get_num_threads(),
    )


# The harness's own cost on a cell (``harness.measure.overhead``): in round 0, after its
# samples, pairs of one harness sample and one bare-loop sample of the step, for about
# BARE_SHARE of the round's budget (BARE_MIN_PAIRS to BARE_MAX_PAIRS pairs). A cell where
# BARE_MIN_PAIRS of its fastest sample do not fit that share (samples over ~17 ms at the
# default 2 s and 5 rounds) gets none: its calls are long enough that a per-call cost of
# microseconds does not show, and the pairs would cost it more than the share.
BARE_SHARE = 0.25
BARE_MIN_PAIRS = 3
BARE_MAX_PAIRS = 20


def bare_metrics(p: Prepared, done: RoundDone, settings: RunSettings) -> dict[str, Any]:
    """``metrics`` keys ``bare_call_s`` (the step in a bare loop, seconds per call),
    ``harness_over_bare`` (the median of the pairs' ratios) and ``bare_pairs``, measured
    right after ``done``'s samples (a warm round); {} when the pairs do not fit."""
    if p.check is None or not done.samples:
        return {}
    per_pair = 2 * min(done.samples) * done.k  # the fastest: a busy machine's is longer
    share = BARE_SHARE * settings.budget_s / settings.rounds
    if BARE_MIN_PAIRS * per_pair > share:
        return {}
    return bare_overhead(p.run, p.check.run, p.device, calls_per_sample=done.k,
                         pairs=BARE_MAX_PAIRS, min_pairs=BARE_MIN_PAIRS, budget_s=share,
                         config=settings.timing(), check=p.check.verify).metrics()


def rewarm(last: RoundDone, settings: RunSettings) -> str:
    """A warm process's warm-up before a later round: ``"brief"`` (calls for
    ``TimingConfig.rewarm_s``) when its samples are shorter than that, else ``"none"``: a
    longer sample refills the caches the other cells used within its first milliseconds,
    and a whole extra call per round would double the cost of a slow cell."""
    if not last.samples:
        return "brief"
    per_sample = statistics.median(last.samples) * last.k
    return "brief" if per_sample < TimingConfig().rewarm_s else "none"


def measure_cell(cell: Cell, settings: RunSettings) -> dict[str, Any]:
    """Measure ``cell`` in this process, its rounds back to back; the Record fields (ok).

    The runner interleaves the rounds of many cells instead (``harness.run.runner``)."""
    workload = workloads.get(cell.workload)
    if getattr(workload, "kind", "timed") == "task":
        at = enter_cell(cell, settings.seed, settings.precision)
        with kernel_log() as kernels:
            out = measure_task(cell, settings, workload, at)
        k = _kernel_fields(kernels, settings)
        note = k.pop("kernel_note")
        return {**out, **k, "message": f"{out['message']}; {note}" if note else out["message"]}
    p = prepare_cell(cell, settings)
    pool = Pool()
    done: list[RoundDone] = []
    for r in range(settings.rounds):
        last = done[-1] if done else None
        done.append(measure_round(
            p, settings, round_index=r, taken=pool.quiet(torch.get_num_threads()),
            calls_per_sample=last.k if last else None,
            warmup="full" if last is None else rewarm(last, settings)))
        pool.add(r, done[-1].samples, done[-1].contention)
        if r == 0:
            p.static["metrics"] = bare_metrics(p, done[0], settings)
    return pooled_fields(p.static, pool, noise_threshold=settings.noise_threshold,
                         threads=torch.get_num_threads(), warmup_s=done[0].warmup_s,
                         stop_reason=done[-1].stop_reason, calls_per_sample=done[-1].k)


def measure_task(cell: Cell, settings: RunSettings, workload: Any,
                 at: Placement) -> dict[str, Any]:
    """Train ``cell``'s model on a task workload; Record fields with its ``metrics``.

    ``time_median_s`` is the median training step (its samples are every step's time)."""
    device, dtype = at.device, at.dtype
    opts, adapter_overrides = workload.split(dict(cell.overrides))

    def clock() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    seed = opts.cell_seed(settings.seed)
    torch.manual_seed(seed)  # the cell's own seed, when it has one, builds its model
    with MemoryTracker(device) as mem:
        model, _ = build_model(cell, at, {**adapter_overrides, **workload.io(opts)})
        # the adapter's own parameters: everything but what the task adds around it (a
        # byte embedding): the non-embedding count of the scaling literature
        model_params = sum(p.numel() for p in model.parameters())
        res, params = workload.run_task(model, opts, batch=cell.batch, seq_len=cell.seq_len,
                                        device=device, dtype=dtype, seed=seed, clock=clock)
    t = res.step_times_s
    diverged = res.stopped_by == "diverged"  # a non-finite train or test loss
    m = Measurement.from_samples(t, noise_threshold=settings.noise_threshold) if t else None
    median = m.median if m else None
    return dict(
        params=params,
        time_median_s=median,
        time_iqr_s=m.iqr if m and m.n > 1 else None,
        time_min_s=m.min if m else None,
        samples=list(t),
        n_samples=res.steps,
        peak_mem_bytes=mem.peak_bytes,
        peak_reserved_bytes=mem.reserved_bytes,
        tokens_per_s=cell.batch * cell.seq_len / median if median else None,
        metrics={**res.metrics(), "params": params, "model_params": model_params},
        message=(f"non-finite: training diverged at step {res.steps}; " if diverged else "")
        + res.summary(),
        **({"status": "nonfinite"} if diverged else {}),
    )


def run_cell(cell: Cell, settings: RunSettings) -> Record:
    """Measure one cell; any Python-level failure becomes the record's status."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    try:
        fields = measure_cell(cell, settings)
        status = fields.pop("status", "ok")
    except Exception as exc:  # noqa: BLE001 - every failure is a result to record
        status, message = failure(exc)
        fields = {"message": message}
    rec = Record.for_cell(cell, status, started_at=started, **fields)
    rec.wall_s = time.perf_counter() - t0
    rec.threads = torch.get_num_threads()
    return rec


def process_main(cell_dict: dict[str, Any], settings_dict: dict[str, Any], threads: int,
                 conn: Any, start: RoundCommand | None = None) -> None:
    """Entry point of a cell process: own session (so the runner can kill its whole group),
    thread count, then messages (``harness.run.messages``) over the duplex ``conn``.

    A task workload (or any failure) sends one :class:`CellRecord` with the final record.
    A timed cell is prepared once and then measures rounds: it starts with ``start``'s
    round (0, or a later one when resuming or re-preparing, keeping the earlier rounds'
    ``k`` calls per sample), sends a :class:`RoundDone` after each and waits, warm, for
    the next :class:`RoundCommand`; anything else (``Stop``) ends it.
    """
    forkserver.isolate()
    if threads > 0:
        torch.set_num_threads(threads)
    settings = RunSettings(**settings_dict)
    overrides = cell_dict.pop("overrides")
    cell = Cell.make(overrides=overrides, **cell_dict)
    cmd = start or RoundCommand(round=0, taken=0)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()

    def fail(exc: BaseException, where: str = "", ran: str = "") -> None:
        status, message = failure(exc)
        rec = Record.for_cell(cell, status, where + message, started_at=started,
                              wall_s=time.perf_counter() - t0, threads=torch.get_num_threads(),
                              kernel_path=ran)
        conn.send(CellRecord(rec))

    try:
        load_plugins(settings.plugins)
    except Exception as exc:  # noqa: BLE001
        conn.send(CellRecord(Record.for_cell(cell, "error", describe(exc))))
        return
    if getattr(workloads.get(cell.workload), "kind", "timed") == "task":
        conn.send(CellRecord(run_cell(cell, settings)))
        conn.close()
        return
    try:
        p = prepare_cell(cell, settings, count=cmd.round == 0)
    except Exception as exc:  # noqa: BLE001 - every failure is a result to record
        fail(exc)
        return
    # Everything built so far lives as long as the process: move it out of the collector's
    # reach, so the Timer's gc.collect() before each round's samples costs microseconds,
    # not the 0.1 s a full collection over torch's imported objects takes.
    gc.collect()
    gc.freeze()
    last: RoundDone | None = None  # this process's previous round
    while True:
        r0 = time.perf_counter()
        try:
            done = measure_round(p, settings, round_index=cmd.round, taken=cmd.taken,
                                 calls_per_sample=last.k if last else cmd.k,
                                 warmup="full" if last is None else rewarm(last, settings))
            if last is None and cmd.round == 0:  # round 0's setup; a re-prepare's is not kept
                static = {**p.static, "metrics": bare_metrics(p, done, settings)}
                done = replace(done, static=static, started_at=started)
        except Exception as exc:  # noqa: BLE001
            fail(exc, f"round {cmd.round}: " if cmd.round else "", p.static["kernel_path"])
            return
        done = replace(done, wall_s=time.perf_counter() - (t0 if last is None else r0))
        conn.send(done)
        last = done
        try:
            cmd = conn.recv()
        except (EOFError, OSError):  # the runner is gone
            return
        if not isinstance(cmd, RoundCommand):
            return
