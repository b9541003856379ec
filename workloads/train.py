"""``train``: one training step: forward, loss, backward, AdamW step.

The loss is mean squared error against fixed random targets at every position: it
touches every output, like sequence-to-sequence training, and needs no task data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from architectures import SequenceModel
from workloads.base import FirstCall, Prepared, make_inputs, training_step
from workloads.cost import SEQUENCE, mse_loss, training_cost
from workloads.registry import register


@register(
    "train",
    description="one training step: forward, MSE loss, backward, AdamW step",
    default=True,  # what a profile looks at unless told otherwise
)
class Train:
    def prepare(
        self, model: SequenceModel, *, batch: int, seq_len: int, device: torch.device,
        dtype: torch.dtype, seed: int,
    ) -> Prepared:
        x = make_inputs(model, batch, seq_len, device, dtype, seed)
        g = torch.Generator(device="cpu").manual_seed(seed + 1)
        target = torch.randn(batch, seq_len, model.output_size, generator=g).to(device, dtype)
        checked = FirstCall("forward", tuple(target.shape), x.dtype)
        s = dtype.itemsize
        return training_step(model, lambda: F.mse_loss(checked(model(x)), target),
                             batch * seq_len, (x, target),
                             cost=lambda: training_cost(  # the passes this step runs
                                 model, SEQUENCE, batch=batch, n=seq_len, itemsize=s,
                                 loss=mse_loss(target.numel(), s)))
