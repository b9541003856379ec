"""Analytic cost of a model pass: FLOPs and bytes from the shapes alone, no dispatch pass.

torch's ``FlopCounterMode`` counts only ops it has a formula for (matmuls, convolutions,
the CUDA attention kernels): an FFT, a scan of elementwise ops, ``nn.LSTM``'s fused
recurrence or CPU attention count as zero, and counting runs a call under a dispatch
mode, several times slower. Each adapter instead declares its cost beside its code
(``SequenceModel.cost``; the formulas live in each family's ``cost`` module): this
module holds the value object, the names of the passes and the primitives the formulas
are written in, so that every family counts by the same conventions.

What is counted (per call of the pass, for the code as it runs on the pure-PyTorch path;
a fused kernel does the same arithmetic):

* **FLOPs.** A multiply-add is 2 FLOPs (``FlopCounterMode``'s convention: a matmul
  ``(m, k) @ (k, n)`` is ``2·m·k·n``). An elementwise op is 1 FLOP per output element
  whatever it computes (add, multiply, ``tanh``, ``exp``, ``sigmoid`` alike), except the
  few with a stated count: LayerNorm 7 per element, RMSNorm 4, softmax 5; a complex
  multiply is 6 real FLOPs, a complex multiply-add 8. A real FFT (``rfft`` or ``irfft``)
  of length N is ``2.5·N·log2 N``: half the ``5·N·log2 N`` of a complex transform, the
  count FFTW and the FFT literature use for any N (radix-2 Cooley-Tukey's; the 2·3·5-smooth
  lengths used here cost about as much), since a real transform is a half-length complex
  one. Reductions are 1 FLOP per input element. Scans count the ops their code runs (the
  odd-even scan's multiply-adds per level, ``cumsum``/``logcumsumexp`` as one op).
  Attention counts ``QKᵀ`` and ``AV`` (``2·d`` per query-key pair each) and a 5-FLOP
  softmax per score, over the query-key pairs the code computes: ``n(n+1)/2`` for
  ``is_causal=True`` (the flash kernels, on CPU and CUDA, skip masked tiles; torch's
  ``FlopCounterMode`` counts all n² there).
* **bytes.** Each op's inputs read once and its output written once, in the cell's dtype
  (complex values twice that): a lower bound on the memory traffic of the code as written,
  op by op (re-reads, spills, temporaries inside a library kernel are not counted; a fused
  kernel that keeps an intermediate on chip moves less, an unfused one at least this).
* ``matmul_flops``: the share of ``flops`` in explicit real matrix products and
  convolutions (an ``mm``, ``addmm``, ``bmm`` or ``convolution`` the model code calls,
  not one inside a fused kernel such as SDPA or ``nn.LSTM``): what ``FlopCounterMode``
  sees on every device, so tests can hold the formulas to it.
* ``fixed_flops``, ``fixed_bytes``, ``fixed_matmul_flops``: the share in ops whose other
  operand is a constant (the LMU memory's ``Abar``, ``Bbar`` and kernels are fixed by its
  order and theta): a training step's backward of them computes the input's gradient
  only (one op of the forward's size, not two; ``workloads.cost``).

Passes (``SEQUENCE``, ``LAST``, ``STEP``) are what a workload runs; the workloads
declare which (``workloads.cost``), so training and streaming are composed there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass, replace
from typing import Any

SEQUENCE = "sequence"  # forward(x) over (batch, n): ``forward_sequence``
LAST = "last"  # forward_last(x): the output at the last position only (``last_output``)
STEP = "step"  # one step(x_t, state), the n-th token of a stream (its context: n tokens)
PASSES = (SEQUENCE, LAST, STEP)

LAYER_NORM_FLOPS = 7  # per element: mean, centre, square, sum, normalise, scale, shift
RMS_NORM_FLOPS = 4  # per element: square, sum, normalise, scale
SOFTMAX_FLOPS = 5  # per element: max, subtract, exp, sum, divide
COMPLEX_MUL_FLOPS = 6  # (a+bi)(c+di): 4 multiplies, 2 adds
COMPLEX_MAC_FLOPS = 8  # a complex multiply-add


@dataclass(frozen=True)
class Cost:
    """FLOPs and bytes of one call (see the module docstring for what each counts).

    Costs add (``a + b``: one after the other) and scale (``k * a``: ``k`` times).
    """

    flops: float = 0.0
    bytes: float = 0.0
    matmul_flops: float = 0.0  # the share of ``flops`` FlopCounterMode can see
    # the share of the above in ops on constants (the LMU memory's fixed
    # matrices and kernels): their backward computes the input's gradient alone
    fixed_flops: float = 0.0
    fixed_bytes: float = 0.0
    fixed_matmul_flops: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def __mul__(self, k: float) -> Cost:
        if isinstance(k, bool) or not isinstance(k, (int, float)):
            return NotImplemented
        return Cost(*(a * k for a in astuple(self)))

    def fixed(self) -> Cost:
        """This cost, all of it on constants (see ``fixed_flops``)."""
        return replace(self, fixed_flops=self.flops, fixed_bytes=self.bytes,
                       fixed_matmul_flops=self.matmul_flops)

    __rmul__ = __mul__


def total(costs: Sequence[Cost]) -> Cost:
    """The sum of ``costs`` (``Cost()`` for none)."""
    out = Cost()
    for c in costs:
        out = out + c
    return out


def check_pass(pass_: str) -> None:
    if pass_ not in PASSES:
        raise ValueError(f"unknown pass {pass_!r}; valid choices: {', '.join(PASSES)}")


# ----------------------------------------------------------------- primitives
# ``s`` is the bytes of one element of the cell's dtype (``dtype.itemsize``).


def matmul(batch: float, m: float, k: float, n: float, s: int, *,
           shared_rhs: bool = False) -> Cost:
    """``batch`` products ``(m, k) @ (k, n)``; ``shared_rhs``: one right operand for all."""
    rhs = k * n * (1 if shared_rhs else batch)
    flops = 2 * batch * m * k * n
    return Cost(flops, s * (batch * m * k + rhs + batch * m * n), flops)


def linear(rows: float, fan_in: float, fan_out: float, s: int, *, bias: bool = True) -> Cost:
    """``nn.Linear(fan_in, fan_out)`` on ``rows`` rows: the matmul, then the bias add
    (1 FLOP per output, not a matmul FLOP: FlopCounterMode's ``addmm`` leaves it out)."""
    c = matmul(1, rows, fan_in, fan_out, s, shared_rhs=True)
    if bias:
        c = c + Cost(rows * fan_out, s * fan_out)
    return c


def pointwise(elements: float, s: int, *, ops: int = 1, operands: int = 2) -> Cost:
    """``ops`` elementwise ops over ``elements``, each touching ``operands`` full-size
    tensors (its inputs and its output: 2 for ``tanh(x)``, 3 for ``x + y``)."""
    return Cost(ops * elements, ops * operands * elements * s)


def copy(elements: float, s: int) -> Cost:
    """A copy (``cat``, ``contiguous``, a padded or flipped tensor): no FLOPs."""
    return Cost(0.0, 2 * elements * s)


def write(elements: float, s: int) -> Cost:
    """A fresh tensor filled (``zeros``, ``ones``): written once."""
    return Cost(0.0, elements * s)


def reduce(elements: float, outputs: float, s: int) -> Cost:
    """A sum over ``elements`` into ``outputs``: 1 FLOP per input element."""
    return Cost(elements, (elements + outputs) * s)


def layer_norm(rows: float, d: float, s: int) -> Cost:
    return Cost(LAYER_NORM_FLOPS * rows * d, s * (2 * rows * d + 2 * d))


def rms_norm(rows: float, d: float, s: int) -> Cost:
    return Cost(RMS_NORM_FLOPS * rows * d, s * (2 * rows * d + d))


def softmax(elements: float, s: int) -> Cost:
    return Cost(SOFTMAX_FLOPS * elements, 2 * elements * s)


def real_fft_flops(length: int) -> float:
    """FLOPs of one ``rfft`` or ``irfft`` of ``length``: ``2.5·N·log2 N``."""
    return 2.5 * length * math.log2(length) if length > 1 else 0.0


def rfft(transforms: float, length: int, read: float, s: int) -> Cost:
    """``transforms`` real-to-complex FFTs of ``length`` (zero-padded from ``read`` real
    inputs each): ``length // 2 + 1`` complex outputs each."""
    out = transforms * (length // 2 + 1) * 2 * s
    return Cost(transforms * real_fft_flops(length), transforms * read * s + out)


def irfft(transforms: float, length: int, s: int) -> Cost:
    """``transforms`` complex-to-real inverse FFTs of ``length``."""
    spectrum = transforms * (length // 2 + 1) * 2 * s
    return Cost(transforms * real_fft_flops(length), spectrum + transforms * length * s)


def conv1d(batch: float, channels_out: float, length_out: float, taps: float,
           in_per_group: float, length_in: float, channels_in: float, s: int, *,
           bias: bool = True) -> Cost:
    """``F.conv1d``: ``2·taps·in_per_group`` FLOPs per output element (FlopCounterMode's
    convolution formula, every tap counted, zero padding included), plus the bias add."""
    out = batch * channels_out * length_out
    flops = 2 * out * taps * in_per_group
    weight = channels_out * in_per_group * taps
    c = Cost(flops, s * (batch * channels_in * length_in + weight + out), flops)
    if bias:
        c = c + Cost(out, s * channels_out)
    return c


def causal_pairs(n: int) -> float:
    """Query-key pairs of causal attention over ``n`` positions: ``n(n+1)/2``."""
    return n * (n + 1) / 2


def attention(batch_heads: float, pairs: float, queries: float, keys: float,
              head_dim: float, s: int) -> Cost:
    """Scaled dot-product attention over ``pairs`` query-key pairs per head (``QKᵀ``,
    softmax, ``AV``), as SDPA runs it: one fused op reading q, k, v, writing the output.
    Not ``matmul_flops``: FlopCounterMode sees SDPA only through its CUDA kernels."""
    flops = batch_heads * pairs * (4 * head_dim + SOFTMAX_FLOPS)
    io = batch_heads * head_dim * (2 * queries + 2 * keys)
    return Cost(flops, s * io)


# ----------------------------------------------------------------- the residual stack
# ``architectures.blocks``' outline, shared by Mamba, minGRU/minLSTM, S4D and the linear
# attentions: embed, layers of ``h + mixer(norm(h))`` (+ ``h + mlp(norm(h))``), norm, head.

MixerCost = Callable[[str, int, int, int], "Cost | None"]  # (pass, batch, n, itemsize)


def mlp(rows: float, d: float, hidden: float, s: int) -> Cost:
    """``Linear(d, hidden)``, GELU, ``Linear(hidden, d)``."""
    return linear(rows, d, hidden, s) + pointwise(rows * hidden, s) + linear(rows, hidden, d, s)


def residual_ffn(rows: float, d: float, mlp_ratio: int, norm: Callable[..., Cost],
                 s: int) -> Cost:
    """``h + mlp(norm2(h))`` when the block has an MLP, else nothing."""
    if not mlp_ratio:
        return Cost()
    return norm(rows, d, s) + mlp(rows, d, mlp_ratio * d, s) + pointwise(rows * d, s, operands=3)


def residual_stack(pass_: str, batch: int, n: int, s: int, *, input_size: int,
                   output_size: int, d_model: int, mixers: Sequence[MixerCost],
                   mlp_ratio: int, norm: Callable[..., Cost]) -> Cost | None:
    """A ``ResidualStack``'s pass, its mixers' costs given (None if any mixer has none).

    ``SEQUENCE``: every layer over every position. ``LAST``: every mixer over every
    position, the last layer's residual and MLP, the final norm and head at the last
    position only. ``STEP``: one token through every layer (each mixer's own step)."""
    check_pass(pass_)
    d = d_model
    rows = batch if pass_ == STEP else batch * n
    mixer_pass = STEP if pass_ == STEP else SEQUENCE
    parts: list[Cost] = [linear(rows, input_size, d, s)]
    for i, mixer in enumerate(mixers):
        m = mixer(mixer_pass, batch, n, s)
        if m is None:
            return None
        last_only = pass_ == LAST and i == len(mixers) - 1
        after = batch if last_only else rows  # rows the residual and the MLP see
        parts += [norm(rows, d, s), m, pointwise(after * d, s, operands=3),
                  residual_ffn(after, d, mlp_ratio, norm, s)]
    out_rows = batch if pass_ == LAST else rows
    parts += [norm(out_rows, d, s), linear(out_rows, d, output_size, s)]
    return total(parts)


def stack(model: Any, pass_: str, batch: int, n: int, s: int) -> Cost | None:
    """``residual_stack`` for a built ``architectures.blocks.ResidualStack``: its sizes,
    norm and MLP read from the modules, each mixer's cost from its ``cost`` method."""
    from torch import nn

    layers = list(model.layers)
    first = layers[0]
    norm = rms_norm if isinstance(model.norm_f, nn.RMSNorm) else layer_norm
    ratio = first.mlp[0].out_features // model.d_model if first.mlp is not None else 0

    def mixer_cost(layer: Any) -> MixerCost:
        fn = getattr(layer.mixer, "cost", None)
        return lambda p, b, t, size: fn(p, batch=b, n=t, itemsize=size) if fn else None

    return residual_stack(pass_, batch, n, s, input_size=model.input_size,
                          output_size=model.output_size, d_model=model.d_model,
                          mixers=[mixer_cost(layer) for layer in layers], mlp_ratio=ratio,
                          norm=norm)


__all__ = ["COMPLEX_MAC_FLOPS", "COMPLEX_MUL_FLOPS", "LAST", "PASSES", "SEQUENCE", "STEP",
           "Cost", "attention", "causal_pairs", "check_pass", "conv1d", "copy", "irfft",
           "layer_norm", "linear", "matmul", "mlp", "pointwise", "reduce", "residual_ffn",
           "residual_stack", "rfft", "rms_norm", "softmax", "stack", "total", "write"]
