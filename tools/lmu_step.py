"""The parallel LMU's classify step three ways, interleaved in one process: the harness's
samples of the cell, a bare loop of the same step, and a hand-written eq. 25 step.

    python -m tools.lmu_step [--arch lmu-fft] [--seq-len 784] [--batch 100]
                             [--preset small] [--rounds 30] [--samples 5]

- **harness**: the cell set up as the worker sets it up (``prepare_cell``: the workload's
  step wrapped in the every-call check) and sampled by the worker's ``Timer`` with the
  run's settings, ``--samples`` samples a round; its median per round.
- **bare**: ``opt.zero_grad(); cross_entropy(model.forward_last(x), y).backward();
  opt.step()`` on the same model, inputs, targets and optimizer (taken from the
  workload's step), timed with the same clock (``time.perf_counter``), as many samples.
- **hand**: eq. 25 written out on a copy of the weights with its own AdamW: the last
  memory state ``m_n = sum_k H[n-1-k] u_k`` as one ``(b·memory_d, n) @ (n, order)``
  matmul with the reversed impulse response computed once (float64 loop, flipped, cast),
  then the model's hidden and output layers. Its logits are asserted equal to the
  model's before anything is timed.

The three take turns every round, order reversed every other round, so drift on a
shared machine falls on all; printed: each one's median and the per-round ratios
harness / bare and bare / hand as median [quartiles]. CPU only.
"""

from __future__ import annotations

import argparse
import copy
import gc
import inspect
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

import torch
import torch.nn.functional as F

from architectures.lmu import impulse_response_ref
from harness.measure.timing import Timer
from harness.run.settings import RunSettings
from harness.run.worker import prepare_cell
from harness.store.records import Cell


def workload_parts(run: Callable[[], object]) -> tuple:
    """The model, inputs, targets and optimizer inside the classify workload's step."""
    outer = inspect.getclosurevars(run).nonlocals
    inner = inspect.getclosurevars(outer["loss"]).nonlocals
    return inner["model"], inner["x"], inner["target"], outer["opt"]


def hand_step(model, x: torch.Tensor, y: torch.Tensor) -> tuple[Callable, Callable]:
    """(logits(x) of the hand eq. 25 model, one AdamW step of it) on a copy of the weights."""
    net = copy.deepcopy(model)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    b, n, _ = x.shape
    A, B = model._Abar64, model._Bbar64
    R = impulse_response_ref(A, B, n).flip(0).to(x.dtype).contiguous()  # R[k] = H[n-1-k]
    We = net.encoder.weight

    def logits(x: torch.Tensor) -> torch.Tensor:
        u = x @ We.T  # (b, n, memory_d)
        m = (u.transpose(1, 2).reshape(-1, n) @ R).reshape(b, -1)  # eq. 25, channel-major
        if net.hidden is None:
            return net.output(m)
        feats = torch.cat([m, x[:, -1]], dim=-1) if net.input_to_hidden else m
        return net.output(torch.tanh(net.hidden(feats)))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(logits(x), y).backward()
        opt.step()

    return logits, step


def quartiles(values: list[float]) -> tuple[float, float, float]:
    v = sorted(values)
    q = statistics.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3
    return q[0], statistics.median(v), q[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="lmu-fft")
    ap.add_argument("--seq-len", type=int, default=784)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--samples", type=int, default=5, help="samples per variant a round")
    args = ap.parse_args()

    cell = Cell.make(arch=args.arch, workload="classify", seq_len=args.seq_len,
                     batch=args.batch, preset=args.preset, device="cpu")
    settings = RunSettings(count_flops=False)
    p = prepare_cell(cell, settings, count=False)
    model, x, y, opt = workload_parts(p.check.run)

    def bare() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model.forward_last(x), y).backward()
        opt.step()

    logits, hand = hand_step(model, x, y)
    with torch.no_grad():
        torch.testing.assert_close(logits(x), model.forward_last(x), rtol=1e-4, atol=1e-5)

    timer = Timer(p.run, p.device, settings.timing(), check=p.check.verify)
    first = timer.measure()  # full warm-up: the calls per sample, as round 0 sets them
    k = first.calls_per_sample
    config = replace(timer.config, max_samples=args.samples, ci_stop_min_samples=args.samples,
                     budget_s=1e9, target_rel_ci=1e-9)  # exactly --samples samples a round
    timer = Timer(p.run, p.device, config, check=p.check.verify)

    def plain(fn: Callable[[], None]) -> float:
        per = []
        for _ in range(args.samples):
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            per.append((time.perf_counter() - t0) / k)
        return statistics.median(per)

    variants: dict[str, Callable[[], float]] = {
        "harness": lambda: timer.measure(warmup="none", calls_per_sample=k).median,
        "bare": lambda: plain(bare),
        "hand": lambda: plain(hand),
    }
    for _ in range(3):
        bare()
        hand()
    gc.collect()
    gc.freeze()  # as the worker does: the Timer's collection then costs microseconds
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.rounds):
        order = list(variants.items())
        for name, fn in order if r % 2 == 0 else reversed(order):
            times[name].append(fn())
    print(f"{cell.cell_id}: {args.rounds} rounds x {args.samples} samples x {k} call(s), "
          f"{torch.get_num_threads()} threads")
    for name, v in times.items():
        print(f"  {name:8s} median {statistics.median(v) * 1e3:8.3f} ms")
    for a, b in (("harness", "bare"), ("bare", "hand")):
        lo, med, hi = quartiles([s / t for s, t in zip(times[a], times[b], strict=True)])
        print(f"  {a} / {b}: {med:.3f} [quartiles {lo:.3f} .. {hi:.3f}]")


if __name__ == "__main__":
    main()
