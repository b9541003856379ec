"""``forward``: inference over the whole sequence, no autograd."""

from __future__ import annotations

import torch

from architectures import SequenceModel
from workloads.base import FirstCall, Prepared, make_inputs
from workloads.cost import forward_cost
from workloads.registry import register


@register(
    "forward",
    description="inference over the whole sequence (no grad)",
)
class Forward:
    def prepare(
        self, model: SequenceModel, *, batch: int, seq_len: int, device: torch.device,
        dtype: torch.dtype, seed: int,
    ) -> Prepared:
        x = make_inputs(model, batch, seq_len, device, dtype, seed)
        model.eval()
        checked = FirstCall("forward", (batch, seq_len, model.output_size), x.dtype)

        @torch.no_grad()
        def run() -> torch.Tensor:
            return checked(model(x))

        return Prepared(run=run, tokens=batch * seq_len, inputs=(x,),
                        cost=lambda: forward_cost(model, batch=batch, n=seq_len,
                                                  itemsize=dtype.itemsize))
