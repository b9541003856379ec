"""What one timed call of a workload costs, from the adapter's analytic pass costs.

Each workload declares the passes its timed call runs (``forward``: ``SEQUENCE``;
``train``: ``SEQUENCE`` + MSE + backward + AdamW; ``classify``: ``LAST`` + cross-entropy
+ backward + AdamW; ``stream``: ``STEP`` at every position of the stream) and composes
them here; the adapters know only their passes (``SequenceModel.cost``), the harness only
the result (``Prepared.cost``). Conventions beyond ``architectures.cost``'s:

* **backward = 2 × forward**, FLOPs and bytes alike, of the forward pass and the loss:
  the standard estimate (Kaplan et al. 2020's 6·N FLOPs per token for a training step):
  each matmul's backward is two matmuls of its size (input and weight gradients); **1 ×**
  for ops on constants (``Cost.fixed_flops``: the LMU memory's fixed matrices and
  kernels), which need the input's gradient alone. It is an estimate, not a bound: the
  first layer needs no input gradient, and an elementwise op's backward may cost less or
  more than the op.
* **AdamW**, per trained parameter: 14 FLOPs (decay 1, first moment 3, second moment 4,
  denominator 3, update 3) and 7 values moved (parameter, gradient and both moments
  read, parameter and moments written); ``zero_grad(set_to_none=True)`` is free.
* **losses**: MSE 3 FLOPs per output (difference, square, sum); cross-entropy 6 per
  logit (softmax's 5 and the log).

None wherever the adapter declares no formula: a record then says "unknown", never 0.
"""

from __future__ import annotations

from typing import Any

from architectures.cost import LAST, SEQUENCE, STEP, Cost

BACKWARD_FACTOR = 2.0
ADAMW_FLOPS_PER_PARAM = 14
ADAMW_VALUES_PER_PARAM = 7
MSE_FLOPS = 3
CROSS_ENTROPY_FLOPS = 6


def pass_cost(model: Any, pass_: str, *, batch: int, n: int, itemsize: int) -> Cost | None:
    """The adapter's cost of ``pass_``, or None where it has no formula."""
    fn = getattr(model, "cost", None)
    return fn(pass_, batch=batch, n=n, itemsize=itemsize) if callable(fn) else None


def forward_cost(model: Any, *, batch: int, n: int, itemsize: int) -> Cost | None:
    """``forward``: the whole sequence, no autograd."""
    return pass_cost(model, SEQUENCE, batch=batch, n=n, itemsize=itemsize)


def training_cost(model: Any, pass_: str, *, batch: int, n: int, itemsize: int,
                  loss: Cost) -> Cost | None:
    """One AdamW step on a loss over ``pass_``'s output: (forward + loss) × (1 + backward
    factor), less one forward of the ops on constants (their backward is the input's
    gradient alone), + the optimizer's per-parameter work."""
    forward = pass_cost(model, pass_, batch=batch, n=n, itemsize=itemsize)
    if forward is None:
        return None
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = Cost(ADAMW_FLOPS_PER_PARAM * params, ADAMW_VALUES_PER_PARAM * params * itemsize)
    step = forward + loss
    on_constants = Cost(step.fixed_flops, step.fixed_bytes, step.fixed_matmul_flops)
    return (1 + BACKWARD_FACTOR) * step + opt + (1 - BACKWARD_FACTOR) * on_constants


def mse_loss(elements: int, itemsize: int) -> Cost:
    """``F.mse_loss`` over ``elements`` outputs against as many targets."""
    return Cost(MSE_FLOPS * elements, 2 * elements * itemsize)


def cross_entropy_loss(rows: int, classes: int, itemsize: int) -> Cost:
    """``F.cross_entropy`` over ``rows`` rows of ``classes`` logits."""
    return Cost(CROSS_ENTROPY_FLOPS * rows * classes, rows * classes * itemsize)


def stream_cost(model: Any, *, batch: int, n: int, itemsize: int) -> Cost | None:
    """``n`` steps from a fresh state: step t sees t tokens (a KV cache grows, a
    recurrent state does not). A step's cost that is affine in t (every built-in:
    constant, or attention over t keys) is summed in closed form; any other is summed
    step by step."""

    def step(t: int) -> Cost | None:
        return pass_cost(model, STEP, batch=batch, n=t, itemsize=itemsize)

    first, last = step(1), step(n)
    if first is None or last is None:
        return None
    if n <= 2:
        return first + last if n == 2 else first
    slope = Cost(last.flops - first.flops, last.bytes - first.bytes,
                 last.matmul_flops - first.matmul_flops)
    probes = {(n + 3) // 4, (n + 1) // 2}  # two inner steps against the line through both ends
    if all((c := step(t)) is not None and _close(c, first + (t - 1) / (n - 1) * slope)
           for t in probes):
        return (n / 2) * (first + last)
    steps = [step(t) for t in range(1, n + 1)]
    if any(c is None for c in steps):
        return None
    out = Cost()
    for c in steps:
        out = out + c
    return out


def _close(a: Cost, b: Cost, rel: float = 1e-9) -> bool:
    return all(abs(x - y) <= rel * max(abs(x), abs(y), 1.0)
               for x, y in ((a.flops, b.flops), (a.bytes, b.bytes),
                            (a.matmul_flops, b.matmul_flops)))


__all__ = ["ADAMW_FLOPS_PER_PARAM", "ADAMW_VALUES_PER_PARAM", "BACKWARD_FACTOR",
           "CROSS_ENTROPY_FLOPS", "LAST", "MSE_FLOPS", "SEQUENCE", "cross_entropy_loss",
           "forward_cost", "mse_loss", "pass_cost", "stream_cost", "training_cost"]
