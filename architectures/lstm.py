"""LSTM baseline: ``nn.LSTM`` (cuDNN on GPU) and a linear head.

The LSTM is the standard sequential recurrent baseline: the fused library kernel loops
over time, so training is O(n) sequential steps and the state is O(1) in n.
"""

from __future__ import annotations

import torch
from torch import nn

from architectures.base import SequenceModel, check_input, check_positive_int
from architectures.registry import register

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (num_layers, batch, hidden_size)


@register(
    "lstm",
    family="rnn",
    description="nn.LSTM (cuDNN on GPU) + linear head",
    parallel_training=False,
    stepwise=True,
    time_complexity="O(n)",
    memory_complexity="O(n)",
    step_memory="O(1)",
)
class LSTM(SequenceModel):
    def __init__(
        self, input_size: int, output_size: int, hidden_size: int = 155, num_layers: int = 1
    ) -> None:
        super().__init__(input_size, output_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, output_size)

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out)

    def last_output(self, x: torch.Tensor) -> torch.Tensor:
        """The head on the last hidden state only."""
        out, _ = self.lstm(x)
        return self.head(out[:, -1])

    def init_state(
        self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> State:
        ref = self.head.weight
        shape = (self.num_layers, batch, self.hidden_size)
        h = torch.zeros(shape, device=device or ref.device, dtype=dtype or ref.dtype)
        return h, h.clone()

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        check_input(x_t, self.input_size, rank=2)
        out, state = self.lstm(x_t.unsqueeze(1), state)
        return self.head(out[:, 0]), state
