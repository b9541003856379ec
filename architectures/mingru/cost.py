"""Analytic FLOPs and bytes of the minGRU / minLSTM mixers (conventions: ``architectures.cost``).

Training runs the log-space scan (``log_space_scan``): ``cumsum``, a subtraction,
``logcumsumexp``, an addition and ``exp``, each one elementwise op per value; around it
the gates in log space (``softplus`` is ``logaddexp`` against a fresh zero tensor,
``log_g`` a ``where`` over both branches). Each op is counted as written, 1 FLOP per
element (``architectures.cost``), so a transcendental counts as much as an add.
"""

from __future__ import annotations

from typing import Any

from architectures import cost as C
from architectures.cost import Cost


def _ops(elements: float, s: int, unary: int = 0, binary: int = 0, where: int = 0,
         fresh: int = 0) -> Cost:
    """Elementwise ops on ``elements`` values: ``unary`` (2 operands), ``binary`` (3),
    ``where`` (4: condition, two branches, output), ``fresh`` tensors written (zeros)."""
    return (C.pointwise(elements, s, ops=unary) + C.pointwise(elements, s, ops=binary, operands=3)
            + C.pointwise(elements, s, ops=where, operands=4) + fresh * C.write(elements, s))


def _softplus(e: float, s: int) -> Cost:  # logaddexp(x, zeros_like(x))
    return _ops(e, s, binary=1, fresh=1)


def _log_g(e: float, s: int) -> Cost:  # where(x >= 0, log(relu(x) + 0.5), -softplus(-x))
    return _ops(e, s, unary=6, where=1) + _softplus(e, s)


def _log_space_scan(e: float, s: int) -> Cost:  # cumsum, -, logcumsumexp, +, exp
    return _ops(e, s, unary=3, binary=2)


def mixer(m: Any, pass_: str, batch: int, n: int, s: int, *, lstm: bool) -> Cost:
    """``MinGRUMixer`` / ``MinLSTMMixer`` (``lstm``): ``forward`` (``SEQUENCE``) or one ``step``."""
    dm, dh = m.to_gates.in_features, m.d_hidden
    rows = batch if pass_ == C.STEP else batch * n
    e = rows * dh
    gates = C.linear(rows, dm, (3 if lstm else 2) * dh, s, bias=False)
    out = C.linear(rows, dh, dm, s, bias=False)
    if pass_ == C.STEP:  # the cell as written, with sigmoid gates and g(h̃)
        g = _ops(e, s, unary=3, where=1)  # x >= 0, x + 0.5, sigmoid(x), where
        if lstm:  # f/(f+i)·h + i/(f+i)·g
            cell = _ops(e, s, unary=2, binary=7) + g
        else:  # (1 - z)·h + z·g
            cell = _ops(e, s, unary=2, binary=3) + g
        return gates + cell + out
    if lstm:  # diff = softplus(-f) - softplus(-i); -softplus(diff); -softplus(-diff)
        log_gates = (_ops(e, s, unary=2, binary=1) + 2 * _softplus(e, s)
                     + _ops(e, s, unary=1) + _softplus(e, s)
                     + _ops(e, s, unary=2) + _softplus(e, s))
    else:  # -softplus(k); -softplus(-k)
        log_gates = _ops(e, s, unary=1) + _softplus(e, s) + _ops(e, s, unary=2) + _softplus(e, s)
    log_b = _log_g(e, s) + _ops(e, s, binary=1)
    return gates + log_gates + log_b + _log_space_scan(e, s) + out


__all__ = ["mixer"]
