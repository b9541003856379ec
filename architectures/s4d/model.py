"""S4D: residual blocks of a diagonal linear state-space layer, trained by FFT convolution.

One layer on ``x (batch, n, d_model)``, as the ``s4d`` example of state-spaces/s4::

    y = causal_fft_conv(x, K) + D ⊙ x       K from s4d_kernel: one SSM per channel
    out = GLU(Linear(d_model → 2 d_model)(GELU(y)))

S4D-Lin initialisation: ``A_k = -1/2 + iπk``, ``C ~ CN(0, 1)``, ``log Δ`` uniform in
[log 1e-3, log 1e-1]. ``step()`` runs the same SSM as a complex diagonal recurrence.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from architectures.base import check_positive_int
from architectures.blocks import Mixer, ResidualStack
from architectures.cost import Cost
from architectures.lmu.memory import compute_dtype
from architectures.registry import register
from architectures.s4d import cost as s4d_cost
from architectures.s4d.kernel import causal_fft_conv, discretize, s4d_kernel

DT_MIN, DT_MAX = 1e-3, 1e-1


class S4DMixer(Mixer):
    def __init__(self, d_model: int, d_state: int = 64) -> None:
        super().__init__()
        if d_state < 2 or d_state % 2:
            raise ValueError(f"d_state must be an even integer >= 2 (conjugate pairs), "
                             f"got {d_state!r}")  # fmt: skip
        modes = d_state // 2
        log_dt = torch.rand(d_model) * (math.log(DT_MAX) - math.log(DT_MIN)) + math.log(DT_MIN)
        self.log_dt = nn.Parameter(log_dt)
        self.C = nn.Parameter(torch.randn(d_model, modes, 2) * math.sqrt(0.5))  # CN(0, 1)
        self.log_A_real = nn.Parameter(torch.full((d_model, modes), math.log(0.5)))
        self.A_imag = nn.Parameter(math.pi * torch.arange(modes).float().repeat(d_model, 1))
        self.D = nn.Parameter(torch.randn(d_model))
        self.output = nn.Linear(d_model, 2 * d_model)

    def _ssm(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``log Δ``, ``A``, ``C`` in the compute dtype (16-bit models compute in float32)."""
        real = compute_dtype(dtype)
        A = torch.complex(-torch.exp(self.log_A_real.to(real)), self.A_imag.to(real))
        return self.log_dt.to(real), A, torch.view_as_complex(self.C.to(real).contiguous())

    def _finish(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        y = y.to(x.dtype) + self.D * x
        return F.glu(self.output(F.gelu(y)), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_dt, A, C = self._ssm(x.dtype)
        K = s4d_kernel(log_dt, A, C, x.shape[1])
        return self._finish(causal_fft_conv(x.to(K.dtype), K), x)

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        shape = (batch, *self.log_A_real.shape)
        zeros = torch.zeros(shape, device=device, dtype=compute_dtype(dtype))
        return torch.complex(zeros, zeros)  # (batch, d_model, modes)

    def step(self, x_t: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_dt, A, C = self._ssm(x_t.dtype)
        decay, C_tilde = discretize(log_dt, A, C)
        s = decay * s + x_t.to(log_dt.dtype).unsqueeze(-1)
        y = 2 * (C_tilde * s).sum(-1).real
        return self._finish(y, x_t), s

    def cost(self, pass_: str, *, batch: int, n: int, itemsize: int) -> Cost:
        """Analytic FLOPs and bytes (``architectures/s4d/cost.py``)."""
        return s4d_cost.mixer(self, pass_, batch, n, itemsize)


@register(
    "s4d",
    family="ssm",
    description="S4D (Gu et al. 2022) diagonal SSM layers: Vandermonde kernel, FFT convolution",
    parallel_training=True,
    stepwise=True,
    time_complexity="O(n log n)",
    memory_complexity="O(n)",
    step_memory="O(1)",
)
class S4D(ResidualStack):
    """Pre-norm residual S4D layers (GELU, then a GLU output projection; no separate MLP)."""

    def __init__(
        self,
        input_size: int,
        output_size: int,
        d_model: int = 64,
        n_layers: int = 4,
        d_state: int = 64,
    ) -> None:
        super().__init__(input_size, output_size)
        check_positive_int("n_layers", n_layers)
        self._build(d_model, [S4DMixer(d_model, d_state) for _ in range(n_layers)])
