"""LSTM baseline: ``nn.LSTM`` (cuDNN on GPU) and a linear head.

The LSTM is the standard sequential recurrent baseline: the fused library kernel loops
over time, so training is O(n) sequential steps and the state is O(1) in n.

``step`` does not call ``nn.LSTM`` on a length-1 sequence (its per-call setup made a
token cost 3-4x the cell's arithmetic: 255-281 against 62-86 us/token at batch 1, small
preset, float32, a 2-core CPU, over two sessions); it runs the cell, ``torch.lstm_cell``,
on each layer's own weights: the sequence path's equations (tested equal in float64,
gradients included).
"""

from __future__ import annotations

import torch
from torch import nn

from architectures import cost as C
from architectures.base import SequenceModel, check_input, check_positive_int
from architectures.cost import Cost
from architectures.registry import register

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (num_layers, batch, hidden_size)


# per step and hidden unit, after the gate pre-activations' matmuls: two adds into each
# of the 4 gates (the other projection, the other bias: 8), 3 sigmoids and a tanh (4),
# c = f·c + i·g (3), tanh(c) (1), h = o·tanh(c) (1)
LSTM_CELL_FLOPS = 17


def recurrence_cost(batch: int, n: int, fan_in: int, hidden: int, s: int, *,
                    fused: bool) -> Cost:
    """One LSTM layer over ``n`` steps. ``fused`` (``nn.LSTM``, cuDNN or oneDNN on CPU):
    the input projection of every step in one GEMM, then per step the recurrent GEMM and
    the gates, all inside the library's kernel, so none of it is ``matmul_flops``
    (FlopCounterMode sees none of it). Not fused (``torch.lstm_cell``, one step): two
    ``addmm`` calls it does see, then the gates."""
    H4 = 4 * hidden
    proj = C.linear(batch * n, fan_in, H4, s)
    recur = C.matmul(1, batch, hidden, H4, s, shared_rhs=True)
    gates = Cost(LSTM_CELL_FLOPS * batch * hidden,
                 s * (H4 + batch * H4 + 4 * batch * hidden))  # b_hh, gates, c in, h c out
    c = proj + n * (recur + gates)
    if fused:
        c = Cost(c.flops, c.bytes, 0.0)
    return c


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
        # step() runs the cell layer by layer, which holds for a unidirectional LSTM without
        # projection or dropout between layers (nn.LSTM's defaults, used above)
        if self.lstm.bidirectional or self.lstm.proj_size or self.lstm.dropout:
            raise ValueError("step() needs a unidirectional LSTM, no proj_size, no dropout")
        self._cell_weights = [
            tuple(f"{w}_l{k}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            for k in range(num_layers)
        ]

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
        """One token through ``torch.lstm_cell``, layer by layer, with ``nn.LSTM``'s weights.

        Not ``self.lstm(x_t.unsqueeze(1), state)``: the same numbers, but the module's
        per-call work (checking the state, the sequence kernel's setup for one token)
        cost 3-4x the cell's arithmetic per token at batch 1.
        """
        check_input(x_t, self.input_size, rank=2)
        h0, c0 = state
        lstm = self.lstm
        inp = x_t
        if self.num_layers == 1:
            w_ih, w_hh, b_ih, b_hh = (getattr(lstm, w) for w in self._cell_weights[0])
            h, c = torch.lstm_cell(inp, (h0[0], c0[0]), w_ih, w_hh, b_ih, b_hh)
            return self.head(h), (h.unsqueeze(0), c.unsqueeze(0))
        hs, cs = [], []
        for k, names in enumerate(self._cell_weights):
            w_ih, w_hh, b_ih, b_hh = (getattr(lstm, w) for w in names)
            inp, c = torch.lstm_cell(inp, (h0[k], c0[k]), w_ih, w_hh, b_ih, b_hh)
            hs.append(inp)
            cs.append(c)
        return self.head(inp), (torch.stack(hs), torch.stack(cs))

    def cost(self, pass_: str, *, batch: int, n: int, itemsize: int) -> Cost | None:
        """Every layer's recurrence (``recurrence_cost``) and the head: on every position
        (``SEQUENCE``) or the last (``LAST``); ``STEP`` runs ``torch.lstm_cell`` per layer."""
        C.check_pass(pass_)
        s, H = itemsize, self.hidden_size
        step = pass_ == C.STEP
        parts = [recurrence_cost(batch, 1 if step else n, self.input_size if k == 0 else H,
                                 H, s, fused=not step) for k in range(self.num_layers)]
        if step and self.num_layers > 1:  # the new state stacked
            parts.append(C.copy(2 * self.num_layers * batch * H, s))
        rows = batch * n if pass_ == C.SEQUENCE else batch
        parts.append(C.linear(rows, H, self.output_size, s))
        return C.total(parts)
