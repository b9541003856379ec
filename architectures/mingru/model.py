"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?").

Gates depend on the input only, never on ``h_{t-1}``, which makes the recurrence linear
in ``h`` and so trainable by a parallel scan, while inference stays an O(1)-state RNN::

    minGRU:  z = σ(W_z x),  h̃ = W_h x,  h_t = (1 - z) h_{t-1} + z g(h̃)
    minLSTM: f = σ(W_f x),  i = σ(W_i x),  h̃ = W_h x,
             h_t = f/(f+i) · h_{t-1} + i/(f+i) · g(h̃)

Training uses ``log_space_scan`` (the paper's method); ``step()`` runs the cell as written.
Each layer widens to ``expand · d_model`` and projects back, in a pre-norm residual block
with an MLP (the paper's language-model setup).
"""

from __future__ import annotations

import torch
from torch import nn

from architectures.base import check_positive_int
from architectures.blocks import Mixer, ResidualStack
from architectures.cost import Cost
from architectures.mingru import cost as mingru_cost
from architectures.mingru.scan import g, log_g, log_space_scan, softplus
from architectures.registry import register


class MinGRUMixer(Mixer):
    def __init__(self, d_model: int, expand: int = 1) -> None:
        super().__init__()
        self.d_hidden = expand * d_model
        self.to_gates = nn.Linear(d_model, 2 * self.d_hidden, bias=False)
        self.out = nn.Linear(self.d_hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h_tilde, k = self.to_gates(x).chunk(2, dim=-1)
        # log z = -softplus(-k), log (1 - z) = -softplus(k)
        h = log_space_scan(-softplus(k), -softplus(-k) + log_g(h_tilde))
        return self.out(h)

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return torch.zeros(batch, self.d_hidden, device=device, dtype=dtype)

    def step(self, x_t: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h_tilde, k = self.to_gates(x_t).chunk(2, dim=-1)
        z = torch.sigmoid(k)
        h = (1 - z) * h + z * g(h_tilde)
        return self.out(h), h

    def cost(self, pass_: str, *, batch: int, n: int, itemsize: int) -> Cost:
        """Analytic FLOPs and bytes (``architectures/mingru/cost.py``)."""
        return mingru_cost.mixer(self, pass_, batch, n, itemsize, lstm=False)


class MinLSTMMixer(MinGRUMixer):
    def __init__(self, d_model: int, expand: int = 1) -> None:
        super().__init__(d_model, expand)
        self.to_gates = nn.Linear(d_model, 3 * self.d_hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h_tilde, f, i = self.to_gates(x).chunk(3, dim=-1)
        # log f' = log f - log(f + i) = -softplus(diff), diff = log i - log f
        diff = softplus(-f) - softplus(-i)
        h = log_space_scan(-softplus(diff), -softplus(-diff) + log_g(h_tilde))
        return self.out(h)

    def step(self, x_t: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h_tilde, f, i = self.to_gates(x_t).chunk(3, dim=-1)
        f, i = torch.sigmoid(f), torch.sigmoid(i)
        h = f / (f + i) * h + i / (f + i) * g(h_tilde)
        return self.out(h), h

    def cost(self, pass_: str, *, batch: int, n: int, itemsize: int) -> Cost:
        """Analytic FLOPs and bytes (``architectures/mingru/cost.py``)."""
        return mingru_cost.mixer(self, pass_, batch, n, itemsize, lstm=True)


_COMMON = dict(
    family="rnn",
    parallel_training=True,
    stepwise=True,
    time_complexity="O(n)",
    memory_complexity="O(n)",
    step_memory="O(1)",
)


class _MinRNN(ResidualStack):
    mixer_cls: type[MinGRUMixer] = MinGRUMixer

    def __init__(
        self,
        input_size: int,
        output_size: int,
        d_model: int = 64,
        n_layers: int = 2,
        expand: int = 1,
        mlp_ratio: int = 4,
    ) -> None:
        super().__init__(input_size, output_size)
        check_positive_int("n_layers", n_layers)
        check_positive_int("expand", expand)
        mixers = [self.mixer_cls(d_model, expand) for _ in range(n_layers)]
        self._build(d_model, mixers, mlp_ratio=mlp_ratio)


@register(
    "mingru",
    description="minGRU (Feng et al. 2024): input-only gates, log-space parallel scan",
    **_COMMON,
)
class MinGRU(_MinRNN):
    """Pre-norm residual minGRU layers, each followed by an MLP."""

    mixer_cls = MinGRUMixer


@register(
    "minlstm",
    description="minLSTM (Feng et al. 2024): normalised input-only gates, log-space scan",
    **_COMMON,
)
class MinLSTM(_MinRNN):
    """Pre-norm residual minLSTM layers, each followed by an MLP."""

    mixer_cls = MinLSTMMixer
