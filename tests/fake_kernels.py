"""CPU stand-ins for mamba-ssm and flash-linear-attention that keep the real packages' rules.

No GPU here, yet the fused-kernel branches must be proven. These fakes are installed into
``sys.modules`` under the real module names, compute their outputs with this repository's
loop references (so a layout mix-up in the caller shows up as wrong numbers), and refuse
what the real packages refuse. Each rule cites its source:

flash-linear-attention (fla-core 0.4.2 and 0.6.0 wheels, read for this file):
* ``fla/ops/delta_rule/chunk.py`` ``chunk_delta_rule``: ``assert q.dtype == k.dtype ==
  v.dtype``; ``assert q.dtype != torch.float32, "ChunkDeltaRuleFunction does not support
  float32. Please use bfloat16."``; ``assert len(beta.shape) == 3``; layout ``[B, T, H, K]``
  with ``beta [B, T, H]`` (``head_first=False``).
* ``fla/ops/linear_attn/chunk.py`` ``chunk_linear_attn`` (0.4.2): ``if q.shape[1] <
  q.shape[2]: raise DeprecationWarning("Input tensor shape suggests potential format
  mismatch: seq_len (...) < num_heads (...)")``; 0.6.0 drops that check.

mamba-ssm (state-spaces/mamba):
* ``mamba_ssm/ops/selective_scan_interface.py``: ``selective_scan_fn`` makes u, delta, B, C
  stride-1 in the last dim, turns 3-D B/C into ``b 1 dstate l`` and calls
  ``selective_scan_cuda.fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, ...)``.
  Since PR #977 the CUDA build is opt-in, and the module then holds
  ``selective_scan_cuda = None`` (PR #915), which fails only when called.
* ``csrc/selective_scan/selective_scan.cpp`` ``selective_scan_fwd``: input float/half/
  bfloat16; A float32; delta same dtype as u; variable B/C in the input dtype; D float32;
  ``u``/``delta`` stride(-1) == 1; ``dstate <= 256``; shapes ``u, delta (b, d, l)``,
  ``A (d, n)``, ``B, C (b, g, n, l)``, ``D (d,)``.
"""

from __future__ import annotations

import sys
import types
import warnings
from dataclasses import dataclass, field, replace

import torch

from architectures import optional
from architectures.linear_attention.naive import delta_rule_ref
from architectures.mamba.scan import selective_scan_ref

FLOAT_TYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass
class Calls:
    """How often each fake kernel ran (proof that the fused branch was taken)."""

    counts: dict[str, int] = field(default_factory=dict)

    def hit(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise RuntimeError(f"fake kernel check failed: {what}")


# -- flash-linear-attention -------------------------------------------------------------------


def make_fla(version: str, calls: Calls) -> dict[str, types.ModuleType]:
    def chunk_linear_attn(q, k, v, scale=None, initial_state=None, output_final_state=False,
                          normalize=True, head_first=False):
        if head_first:
            raise DeprecationWarning("head_first is deprecated")
        if version <= "0.4.2" and q.shape[1] < q.shape[2]:
            raise DeprecationWarning(
                f"Input tensor shape suggests potential format mismatch: seq_len "
                f"({q.shape[1]}) < num_heads ({q.shape[2]}).")
        _check(q.dim() == 4 and k.shape == q.shape and v.shape[:3] == q.shape[:3],
               "layout [B, T, H, K] for q, k and [B, T, H, V] for v")
        calls.hit("chunk_linear_attn")
        scale = k.shape[-1] ** -0.5 if scale is None else scale
        qd, kd, vd = (t.double().transpose(1, 2) for t in (q, k, v))  # [B, H, T, .]
        n = q.shape[1]
        mask = torch.ones(n, n, dtype=torch.bool).tril()
        scores = (qd @ kd.transpose(-1, -2)).masked_fill(~mask, 0) * scale
        o = scores @ vd
        if normalize:
            o = o / (scores.sum(-1, keepdim=True))
        return o.transpose(1, 2).to(q.dtype), None

    def chunk_delta_rule(q, k, v, beta, scale=None, initial_state=None,
                         output_final_state=False, use_qk_l2norm_in_kernel=False,
                         cu_seqlens=None, head_first=False):
        assert q.dtype == k.dtype == v.dtype
        assert q.dtype != torch.float32, \
            "ChunkDeltaRuleFunction does not support float32. Please use bfloat16."
        assert len(beta.shape) == 3, "beta must be of shape (batch size, num of head, seq len)."
        if not head_first and q.shape[1] < q.shape[2]:
            warnings.warn("Input tensor shape suggests potential format mismatch", stacklevel=2)
        _check(beta.shape == q.shape[:3], "beta [B, T, H] for q [B, T, H, K]")
        calls.hit("chunk_delta_rule")
        scale = k.shape[-1] ** -0.5 if scale is None else scale
        qd, kd, vd = (t.double().transpose(1, 2) for t in (q, k, v))
        o = delta_rule_ref(qd * scale, kd, vd, beta.double().transpose(1, 2))
        return o.transpose(1, 2).to(q.dtype), None

    fla = types.ModuleType("fla")
    fla.__version__ = version
    ops = types.ModuleType("fla.ops")
    la = types.ModuleType("fla.ops.linear_attn")
    la.chunk_linear_attn = chunk_linear_attn
    dr = types.ModuleType("fla.ops.delta_rule")
    dr.chunk_delta_rule = chunk_delta_rule
    fla.ops, ops.linear_attn, ops.delta_rule = ops, la, dr
    return {"fla": fla, "fla.ops": ops, "fla.ops.linear_attn": la, "fla.ops.delta_rule": dr}


# -- mamba-ssm --------------------------------------------------------------------------------


class FakeSelectiveScanCuda:
    """``selective_scan_cuda``'s ``fwd`` with ``selective_scan_fwd``'s checks (no is_cuda)."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def fwd(self, u, delta, A, B, C, D, z, delta_bias, delta_softplus, *rest):
        _check(u.dtype in FLOAT_TYPES, "input float, half or bfloat16")
        _check(A.dtype == torch.float32, "A (weight) float32")
        _check(delta.dtype == u.dtype, "delta.scalar_type() == input_type")
        _check(B.dim() >= 3 and B.dtype == u.dtype, "variable B in the input dtype")
        _check(C.dim() >= 3 and C.dtype == u.dtype, "variable C in the input dtype")
        _check(u.stride(-1) == 1 or u.size(-1) == 1, "u.stride(-1) == 1")
        _check(delta.stride(-1) == 1 or delta.size(-1) == 1, "delta.stride(-1) == 1")
        b, d, n = u.shape
        s = A.shape[1]
        _check(s <= 256, "selective_scan only supports state dimension <= 256")
        _check(tuple(delta.shape) == (b, d, n) and tuple(A.shape) == (d, s),
               "delta (b, d, l), A (d, n)")
        _check(tuple(B.shape) == (b, 1, s, n) and tuple(C.shape) == (b, 1, s, n),
               "B, C (b, g, dstate, l)")
        _check(D is None or (D.dtype == torch.float32 and tuple(D.shape) == (d,)),
               "D float32 (d,)")
        _check(z is None and delta_bias is None and not delta_softplus,
               "the adapter passes softplus-ed delta, no z, no bias")
        self.calls.hit("selective_scan_cuda.fwd")
        Dd = torch.zeros(d, dtype=torch.float64) if D is None else D.double()
        y = selective_scan_ref(u.double().transpose(1, 2), delta.double().transpose(1, 2),
                               A.double(), B[:, 0].double().transpose(1, 2),
                               C[:, 0].double().transpose(1, 2), Dd)
        out = y.transpose(1, 2).to(u.dtype)
        return [out, torch.zeros(b, d, 1, 2 * s)]


def make_mamba(version: str, built: bool, calls: Calls) -> dict[str, types.ModuleType]:
    ssi = types.ModuleType("mamba_ssm.ops.selective_scan_interface")
    ssi.selective_scan_cuda = FakeSelectiveScanCuda(calls) if built else None

    def selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                          delta_softplus=False, return_last_state=False):
        u = u if u.stride(-1) == 1 else u.contiguous()
        delta = delta if delta.stride(-1) == 1 else delta.contiguous()
        B = B.contiguous() if B.stride(-1) != 1 else B
        C = C.contiguous() if C.stride(-1) != 1 else C
        if B.dim() == 3:
            B = B.unsqueeze(1)  # rearrange(B, "b dstate l -> b 1 dstate l")
        if C.dim() == 3:
            C = C.unsqueeze(1)
        out, *_ = ssi.selective_scan_cuda.fwd(u, delta, A, B, C, D, z, delta_bias,
                                              delta_softplus, None)
        return out

    ssi.selective_scan_fn = selective_scan_fn
    top = types.ModuleType("mamba_ssm")
    top.__version__ = version
    ops = types.ModuleType("mamba_ssm.ops")
    top.ops, ops.selective_scan_interface = ops, ssi
    return {"mamba_ssm": top, "mamba_ssm.ops": ops,
            "mamba_ssm.ops.selective_scan_interface": ssi}


def install(monkeypatch, modules: dict[str, types.ModuleType], on_cpu: bool = True) -> None:
    """Put fake modules in place (undone by ``monkeypatch``), forget earlier import results
    (the caller clears them again afterwards: see tests' ``fakes`` fixture), and
    (``on_cpu``) let the kernels take CPU tensors so their branches run here."""
    for name, mod in modules.items():
        monkeypatch.setitem(sys.modules, name, mod)
    optional._import.cache_clear()
    if on_cpu:
        for key, k in list(optional.KERNELS.items()):
            monkeypatch.setitem(optional.KERNELS, key, replace(k, device_types=("cuda", "cpu")))

