"""The residual stack shared by the modern sequence models (Mamba, minGRU, S4D, linear attention).

Their language-model code all follows one outline, and only the token mixer differs:

    h = Linear(input_size → d_model)(x)
    for each layer:  h = h + mixer(norm(h))      (and h = h + mlp(norm(h)) when mlp_ratio > 0)
    y = head(norm_f(h))

So each adapter supplies its mixers and this module does the rest, ``step()`` included:
a mixer has ``forward (b, n, d) → (b, n, d)`` and ``init_state`` / ``step`` that compute
the same thing one token at a time. Keeping the outline here means the adapters differ
only where the architectures really differ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from architectures import cost
from architectures.base import SequenceModel, check_input, check_positive_int
from architectures.cost import Cost


class Mixer(nn.Module):
    """A causal token mixer over ``(batch, n, d_model)`` with a recurrent ``step``."""

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> Any:
        raise NotImplementedError

    def step(self, x_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """``x_t (batch, d_model)`` → ``(y_t (batch, d_model), new_state)``."""
        raise NotImplementedError

    def cost(self, pass_: str, *, batch: int, n: int, itemsize: int) -> Cost | None:
        """Analytic cost of ``forward`` (``"sequence"``) or one ``step`` (``"step"``);
        None: no formula declared (``architectures.cost``)."""
        return None


class ShortConv(nn.Module):
    """Causal depthwise convolution over time (Mamba's and DeltaNet's ``d_conv`` = 4).

    ``step`` keeps the last ``kernel_size - 1`` inputs, so it equals ``forward`` exactly.
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.conv = nn.Conv1d(
            channels, channels, kernel_size, groups=channels, padding=kernel_size - 1
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        return self.conv(x.transpose(1, 2))[..., :n].transpose(1, 2)

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        channels = self.conv.in_channels
        return torch.zeros(batch, channels, self.kernel_size - 1, device=device, dtype=dtype)

    def step(self, x_t: torch.Tensor, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        full = torch.cat([window, x_t.unsqueeze(-1)], dim=-1)  # (b, channels, kernel_size)
        y = (full * self.conv.weight[:, 0, :]).sum(-1) + self.conv.bias
        return y, full[..., 1:]


def mlp(d_model: int, ratio: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(d_model, ratio * d_model), nn.GELU(), nn.Linear(ratio * d_model, d_model)
    )


class ResidualBlock(nn.Module):
    """``h + mixer(norm(h))``, then ``h + mlp(norm(h))`` when the block has an MLP."""

    def __init__(
        self, mixer: Mixer, d_model: int, mlp_ratio: int, norm: Callable[[int], nn.Module]
    ) -> None:
        super().__init__()
        self.norm = norm(d_model)
        self.mixer = mixer
        self.norm2 = norm(d_model) if mlp_ratio else None
        self.mlp = mlp(d_model, mlp_ratio) if mlp_ratio else None

    def _ffn(self, h: torch.Tensor) -> torch.Tensor:
        return h if self.mlp is None else h + self.mlp(self.norm2(h))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self._ffn(h + self.mixer(self.norm(h)))

    def forward_last(self, h: torch.Tensor) -> torch.Tensor:
        """``forward(h)[:, -1]``: the mixer needs every position, the MLP only the last."""
        return self._ffn(h[:, -1] + self.mixer(self.norm(h))[:, -1])

    def step(self, h_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        y, state = self.mixer.step(self.norm(h_t), state)
        return self._ffn(h_t + y), state


class ResidualStack(SequenceModel):
    """Base of the mixer adapters: subclasses call ``_build`` with their mixers."""

    def _build(
        self,
        d_model: int,
        mixers: Sequence[Mixer],
        mlp_ratio: int = 0,
        norm: Callable[[int], nn.Module] = nn.LayerNorm,
    ) -> None:
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, int) or mlp_ratio < 0:
            raise ValueError(f"mlp_ratio must be a non-negative integer, got {mlp_ratio!r}")
        self.d_model = check_positive_int("d_model", d_model)
        self.embed = nn.Linear(self.input_size, d_model)
        self.layers = nn.ModuleList(ResidualBlock(m, d_model, mlp_ratio, norm) for m in mixers)
        self.norm_f = norm(d_model)
        self.head = nn.Linear(d_model, self.output_size)

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for layer in self.layers:
            h = layer(h)
        return self.head(self.norm_f(h))

    def last_output(self, x: torch.Tensor) -> torch.Tensor:
        """The last layer's MLP, the final norm and the head at the last position only."""
        h = self.embed(x)
        for layer in self.layers[:-1]:
            h = layer(h)
        return self.head(self.norm_f(self.layers[-1].forward_last(h)))

    def init_state(
        self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> list[Any]:
        """One state per layer, each its mixer's (fixed size: no state grows with n)."""
        check_positive_int("batch", batch)
        ref = self.head.weight
        device = torch.device(device) if device is not None else ref.device
        dtype = dtype or ref.dtype
        return [layer.mixer.init_state(batch, device, dtype) for layer in self.layers]

    def step(self, x_t: torch.Tensor, state: list[Any]) -> tuple[torch.Tensor, list[Any]]:
        check_input(x_t, self.input_size, rank=2)
        h = self.embed(x_t)
        new_state = []
        for layer, s in zip(self.layers, state, strict=True):
            h, s = layer.step(h, s)
            new_state.append(s)
        return self.head(self.norm_f(h)), new_state

    def cost(self, pass_: str, *, batch: int, n: int, itemsize: int) -> Cost | None:
        """The outline's cost with each mixer's own (``architectures.cost.stack``)."""
        return cost.stack(self, pass_, batch, n, itemsize)


def rms_norm(d: int) -> nn.Module:
    """RMSNorm (Mamba's choice of norm)."""
    return nn.RMSNorm(d, eps=1e-5)
