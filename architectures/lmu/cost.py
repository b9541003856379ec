"""Analytic FLOPs and bytes of the LMU family's passes (conventions: ``architectures.cost``).

Written against the code as it runs in each adapter's timed call: the memory kernels
(impulse response, powers of ``Abar``, eq. 25's reversed response) are built once per
length, dtype and device and cached by the model, so they are not part of a call; what
the call does with them is. Per memory mode, for ``S = batch · memory_d`` channels of
order ``d`` over ``n`` steps:

* ``sequential``: per step ``m @ Abarᵀ`` (``2·S·d²``) and ``+ Bbar u`` (``2·S·d``).
* ``fft``: ``S`` rffts of the input and ``d`` of the impulse response (its spectrum is
  not cached) at length ``L`` (``fft_length(n)``, ≥ 2n−1), ``S·d·(L/2+1)`` complex
  products, ``S·d`` irffts: ``2.5·L·log2 L`` each.
* ``conv``: ``conv1d`` over the left-padded input with all ``n`` taps per output
  (``2·S·d·n²``: the zero padding is multiplied too, as the code does).
* ``chunked``: the same within chunks of ``c`` (``2·S·d·n·c``), the carried state
  (``2·S·d²`` per chunk boundary), and its propagation into every row of every chunk
  (``2·S·d²·c`` per chunk, by doubling).
* eq. 25 (``forward_last`` of the parallel modes): one ``(S, n) @ (n, d)`` product.

The memory's work is on constants (``Cost.fixed``): its backward is the input's gradient.
"""

from __future__ import annotations

from typing import Any

from architectures import cost as C
from architectures.cost import Cost
from architectures.lmu.memory import DEFAULT_CHUNK_SIZE, fft_length


def _memory_itemsize(s: int) -> int:
    """16-bit cells compute the memory in float32 (``compute_dtype``)."""
    return 4 if s < 4 else s


def _casts(elements: float, s: int) -> Cost:
    """A 16-bit input cast to float32 and the result cast back; nothing otherwise."""
    return C.copy(elements, s) if s < 4 else Cost()


def memory_sequence(mode: str, batch: int, n: int, channels: int, order: int,
                    chunk_size: int | None, s: int) -> Cost:
    """``lmu_memory(u, mode)`` for ``u (batch, n, channels)``: states ``(batch, n,
    channels, order)``, from cached kernels."""
    S, d = batch * channels, order
    sm = _memory_itemsize(s)
    states = S * n * d
    casts = _casts(batch * n * channels, s) + _casts(states, s)
    if mode == "sequential":
        per_step = (C.matmul(1, S, d, d, sm, shared_rhs=True)
                    + Cost(S * d, sm * (S + d + S * d))  # x_t · Bbar
                    + C.pointwise(S * d, sm, operands=3))
        return (C.write(S * d, sm) + n * per_step + C.copy(states, sm)).fixed() + casts
    if mode == "fft":
        L = fft_length(n)
        F = L // 2 + 1
        spectra = Cost(C.COMPLEX_MUL_FLOPS * S * d * F, 2 * sm * (S * F + d * F + S * d * F))
        return (C.rfft(S, L, n, sm) + C.rfft(d, L, n, sm) + spectra
                + C.irfft(S * d, L, sm)).fixed() + casts
    if mode == "conv":
        taps = C.copy(n * d, sm)  # the impulse response flipped into conv1d's weight
        padded = C.copy(S * (2 * n - 1), sm)
        conv = C.conv1d(S, d, n, n, 1, 2 * n - 1, 1, sm, bias=False)
        return (taps + padded + conv).fixed() + casts
    if mode == "chunked":
        return _chunked(S, n, d, chunk_size or DEFAULT_CHUNK_SIZE, sm).fixed() + casts
    raise ValueError(f"unknown memory mode {mode!r}")


def _chunked(S: int, n: int, d: int, chunk: int, sm: int) -> Cost:
    c = min(chunk, n)
    nc = -(-n // c)
    rows = S * nc  # one row of the conv per chunk and channel
    parts = [C.copy(rows * c, sm),  # padded to whole chunks
             C.copy(c * d, sm), C.copy(rows * (2 * c - 1), sm),  # flipped taps, left pad
             C.conv1d(rows, d, c, c, 1, 2 * c - 1, 1, sm, bias=False)]
    if nc > 1:
        carry_step = C.matmul(1, S, d, d, sm, shared_rhs=True) + C.pointwise(S * d, sm,
                                                                              operands=3)
        parts += [C.write(S * d, sm), (nc - 1) * carry_step, C.copy(rows * d, sm),
                  C.matmul(1, rows, d, d, sm, shared_rhs=True)]  # Abar^1 of each start
        have = 1
        while have < c:  # doubling: rows [have, have + take) from rows [0, take)
            take = min(have, c - have)
            parts += [C.matmul(1, rows * take, d, d, sm, shared_rhs=True),
                      C.copy(rows * (have + take) * d, sm)]
            have += take
        parts.append(C.pointwise(rows * c * d, sm, operands=3))  # local + carry
    return C.total(parts)


def memory_last(mode: str, batch: int, n: int, channels: int, order: int, s: int) -> Cost:
    """The last memory state only: eq. 25's one product, or (``sequential``) the
    recurrence without keeping its states."""
    S, d = batch * channels, order
    sm = _memory_itemsize(s)
    casts = _casts(batch * n * channels, s) + _casts(S * d, s)
    if mode == "sequential":
        per_step = (C.matmul(1, S, d, d, sm, shared_rhs=True)
                    + Cost(S * d, sm * (S + d + S * d)) + C.pointwise(S * d, sm, operands=3))
        return (C.write(S * d, sm) + n * per_step).fixed() + casts
    layout = C.copy(S * n, sm) if channels > 1 else Cost()  # (b, n, c) → (b·c, n)
    return (layout + C.matmul(1, S, n, d, sm, shared_rhs=True)).fixed() + casts


def memory_step(batch: int, channels: int, order: int, s: int) -> Cost:
    """One step of the memory: ``m @ Abarᵀ + u Bbar``."""
    S, d = batch * channels, order
    sm = _memory_itemsize(s)
    return (C.matmul(1, S, d, d, sm, shared_rhs=True) + Cost(S * d, sm * (S + d + S * d))
            + C.pointwise(S * d, sm, operands=3)).fixed()


def _readout(model: Any, rows: int, s: int, *, strided: bool) -> Cost:
    """``ParallelLMU._readout`` on ``rows`` rows: [m | x] gathered, hidden layer, tanh,
    output layer (each as configured)."""
    M = model.memory_d * model.order
    parts: list[Cost] = []
    out = getattr(model.output, "out_features", None)  # None: nn.Identity
    out_bias = getattr(model.output, "bias", None) is not None
    if model.hidden is None:
        if strided:
            parts.append(C.copy(rows * M, s))
        if out is not None:
            parts.append(C.linear(rows, M, out, s, bias=out_bias))
        return C.total(parts)
    fan_in = M + (model.input_size if model.input_to_hidden else 0)
    if model.input_to_hidden or strided:  # torch.cat, or a contiguous copy for the matmul
        parts.append(C.copy(rows * fan_in, s))
    H = model.hidden_size
    parts += [C.linear(rows, fan_in, H, s), C.pointwise(rows * H, s)]
    if out is not None:
        parts.append(C.linear(rows, H, out, s, bias=out_bias))
    return C.total(parts)


def parallel(model: Any, pass_: str, batch: int, n: int, s: int) -> Cost:
    """A ``ParallelLMU`` (``lmu-seq``, ``lmu-fft``, ``lmu-conv``, ``lmu-chunked``, and the
    hybrid's layers): encoder, memory by its mode, readout."""
    C.check_pass(pass_)
    D, d = model.memory_d, model.order
    enc_bias = model.encoder.bias is not None
    if pass_ == C.STEP:
        return (C.linear(batch, model.input_size, D, s, bias=enc_bias)
                + memory_step(batch, D, d, s) + _readout(model, batch, s, strided=False))
    enc = C.linear(batch * n, model.input_size, D, s, bias=enc_bias)
    if pass_ == C.LAST:
        return (enc + memory_last(model.mode, batch, n, D, d, s)
                + _readout(model, batch, s, strided=False))
    memory = memory_sequence(model.mode, batch, n, D, d, model.chunk_size, s)
    strided = model.mode != "sequential"  # the states are a permuted view
    return enc + memory + _readout(model, batch * n, s, strided=strided)


def original(model: Any, pass_: str, batch: int, n: int, s: int) -> Cost:
    """The original LMU (``lmu``): the fused weights built per call (``_fused``; a stream's
    ``step`` reuses them), every input term in one matmul, then per step the two state
    matmuls, the memory update and the tanh, and the head."""
    C.check_pass(pass_)
    D, d, H, I = model.memory_d, model.order, model.hidden_size, model.input_size
    M = D * d
    G = D + H  # [u | hidden] columns of the input and hidden-state products
    step = (C.matmul(1, batch, H, G, s, shared_rhs=True) + Cost(batch * G, s * batch * G)
            + C.pointwise(batch * D, s, operands=3)  # u = g_u + c
            + (Cost(batch * M, s * (batch * D + d + batch * M))  # u · Bbar, m @ Abarᵀ
               + C.matmul(1, batch * D, d, d, s, shared_rhs=True)).fixed()
            + Cost(batch * M, s * batch * M)
            + C.matmul(1, batch, M, H + D, s, shared_rhs=True)  # m @ [W_m | e_m]
            + C.pointwise(batch * H, s, operands=3) + C.pointwise(batch * H, s))  # tanh
    if pass_ == C.STEP:  # the fused weights are cached outside autograd
        return (C.linear(batch, I, G, s) + step
                + C.linear(batch, H, model.output_size, s))
    fused = C.copy(H * G + M * (H + D) + G * I + G, s)
    layout = C.copy(batch * n * I, s) if batch > 1 else Cost()  # time-major input
    state = C.write(batch * (2 * H + M + D), s)
    keep = pass_ == C.SEQUENCE
    rows = batch * n if keep else batch
    return (fused + layout + C.linear(batch * n, I, G, s) + state + n * step
            + (C.copy(batch * n * H, s) if keep else Cost())  # hidden states stacked
            + C.linear(rows, H, model.output_size, s))


def hybrid(model: Any, pass_: str, batch: int, n: int, s: int) -> Cost:
    """``lmu-attention``: embedding, residual parallel-LMU blocks (LayerNorm, the LMU,
    an MLP), one transformer ``Block`` (its ``cost``) unless ``attention=False``,
    final norm and head."""
    C.check_pass(pass_)
    dm = model.d_model
    step = pass_ == C.STEP
    rows = batch if step else batch * n
    attn = model.attention
    parts = [C.linear(rows, model.input_size, dm, s)]
    for i, layer in enumerate(model.layers):
        lmu_pass = C.STEP if step else C.SEQUENCE
        last_only = pass_ == C.LAST and attn is None and i == len(model.layers) - 1
        after = batch if last_only else rows
        hidden = layer.mlp[0].out_features if layer.mlp is not None else 0
        parts += [C.layer_norm(rows, dm, s), parallel(layer.mixer, lmu_pass, batch, n, s),
                  C.pointwise(after * dm, s, operands=3)]
        if hidden:
            parts += [C.layer_norm(after, dm, s), C.mlp(after, dm, hidden, s),
                      C.pointwise(after * dm, s, operands=3)]
    if attn is not None:  # the transformer's Block, costed by its own formula
        parts.append(attn.cost(pass_, batch=batch, n=n, itemsize=s))
    out = rows if pass_ == C.SEQUENCE else batch
    parts += [C.layer_norm(out, dm, s), C.linear(out, dm, model.output_size, s)]
    return C.total(parts)


__all__ = ["hybrid", "memory_last", "memory_sequence", "memory_step",
           "original", "parallel"]
