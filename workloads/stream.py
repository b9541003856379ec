"""``stream``: token-by-token inference with ``step()`` over ``seq_len`` tokens.

One timed call processes the whole stream from a fresh state, so time / seq_len is the
mean per-token latency at that length; ``state_bytes`` is the state (or KV cache) held
after the last token: constant for recurrent models, growing for attention.
"""

from __future__ import annotations

import torch

from architectures import SequenceModel, state_nbytes
from workloads.base import FirstCall, Prepared, make_inputs
from workloads.cost import stream_cost
from workloads.registry import register


@register(
    "stream",
    description="step-by-step inference with step(): per-token latency and state memory",
    per_token=True,
)
class Stream:
    def prepare(
        self, model: SequenceModel, *, batch: int, seq_len: int, device: torch.device,
        dtype: torch.dtype, seed: int,
    ) -> Prepared:
        if not model.info.stepwise:
            raise ValueError(f"adapter {model.info.name!r} has no step(); stream needs one")
        x = make_inputs(model, batch, seq_len, device, dtype, seed)
        model.eval()
        extras: dict[str, int] = {}
        checked = FirstCall("step", (batch, model.output_size), x.dtype)

        @torch.no_grad()
        def run() -> torch.Tensor:
            state = model.init_state(batch, device=device, dtype=dtype)
            y = None
            for t in range(seq_len):
                y, state = model.step(x[:, t], state)
            extras["state_bytes"] = state_nbytes(state)
            return checked(y)

        # thousands of tiny step() calls: counting would cost more than it tells
        return Prepared(run=run, tokens=batch * seq_len, inputs=(x,), extras=extras,
                        count_flops=False,
                        cost=lambda: stream_cost(model, batch=batch, n=seq_len,
                                                 itemsize=dtype.itemsize))
