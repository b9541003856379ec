"""Analytic FLOPs and bytes of an S4D layer's mixer (conventions: ``architectures.cost``).

Every call rebuilds the kernel from the parameters (they change every training step):
the Vandermonde matrix ``exp(Δ A_k l)`` for ``d_model·modes·n`` entries, a complex
exponential each, and its contraction with ``C̃`` (a complex multiply-add per entry,
8 real FLOPs; torch's FlopCounterMode counts that ``bmm`` at 2 per multiply-add, as if
real). The convolution is by real FFTs of length ``fft_length(n)``: the input's and the
kernel's transforms, the spectra's complex products, one inverse transform per channel.
A complex elementwise op (exp, multiply, divide) counts as a complex multiply, 6 FLOPs;
complex values are two of the compute dtype's elements.
"""

from __future__ import annotations

from typing import Any

from architectures import cost as C
from architectures.cost import Cost
from architectures.lmu.memory import fft_length


def _complex(elements: float, s: int, reads: int = 1) -> Cost:
    """A complex elementwise op: 6 FLOPs per output, complex operands of ``2·s`` bytes."""
    return Cost(C.COMPLEX_MUL_FLOPS * elements, 2 * s * (reads + 1) * elements)


def _parameters(d: int, modes: int, s: int) -> Cost:
    """``_ssm`` and ``discretize``: A from its parts, exp(Δ A) and C̃ = C (exp(Δ A) − 1)/A."""
    dm = d * modes
    return (2 * C.pointwise(dm, s) + C.copy(2 * dm, s)  # A = complex(-exp(·), ·)
            + C.pointwise(d, s) + Cost(2 * dm, s * (d + 4 * dm))  # Δ = exp(log Δ), Δ·A
            + _complex(dm, s) + _complex(dm, s, reads=2) + _complex(dm, s, reads=2))


def mixer(m: Any, pass_: str, batch: int, n: int, s: int) -> Cost:
    """``S4DMixer.forward`` over ``(batch, n, d_model)`` (``SEQUENCE``) or one ``step``."""
    d, modes = m.log_A_real.shape
    sm = 4 if s < 4 else s  # 16-bit cells compute the SSM in float32
    rows = batch if pass_ == C.STEP else batch * n
    parts = [_parameters(d, modes, sm)]
    if pass_ == C.STEP:
        e = batch * d * modes
        parts += [_complex(e, sm, reads=2),  # decay · s
                  Cost(e, 2 * sm * 2 * e),  # + x_t (a real number: the real part)
                  _complex(e, sm, reads=2),  # C̃ · s
                  Cost(2 * e, 2 * sm * (e + batch * d)),  # summed over the modes
                  C.pointwise(batch * d, sm)]  # 2 · Re
    else:
        dmn = d * modes * n
        L = fft_length(n)
        F = L // 2 + 1
        parts += [C.write(n, sm), Cost(2 * dmn, sm * (2 * d * modes + n + 2 * dmn)),  # Δ A l
                  _complex(dmn, sm),  # exp: the Vandermonde matrix
                  Cost(C.COMPLEX_MAC_FLOPS * dmn, 2 * sm * (d * modes + dmn + d * n)),  # C̃ V
                  C.pointwise(d * n, sm),  # 2 · Re
                  C.rfft(batch * d, L, n, sm), C.rfft(d, L, n, sm),
                  _complex(batch * d * F, sm, reads=2), C.irfft(batch * d, L, sm)]
    e = rows * d
    parts += [Cost(e, s * (2 * e + d)), C.pointwise(e, s, operands=3),  # + D·x
              C.pointwise(e, s),  # gelu
              C.linear(rows, d, 2 * d, s),  # output
              C.pointwise(e, s), C.pointwise(e, s, operands=3)]  # glu: sigmoid, product
    return C.total(parts)


__all__ = ["mixer"]
