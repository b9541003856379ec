"""``classify``: one training step of a last-step classifier (the psMNIST experiment's shape).

Cross-entropy against one class per sequence, read from the model's output at the last
position through ``forward_last`` (the parallel LMU's eq. 25 path), then backward and an
AdamW step as in ``train``. Inputs are ``train``'s (same generator and seed); classes are
drawn from ``seed + 1`` over the model's ``output_size``. Tokens per step: batch × n.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from architectures import SequenceModel
from workloads.base import FirstCall, Prepared, make_inputs, training_step
from workloads.cost import LAST, cross_entropy_loss, training_cost
from workloads.registry import register


@register(
    "classify",
    description=(
        "one training step of a last-step classifier: forward_last, cross-entropy, "
        "backward, AdamW step"
    ),
    last_position=True,
)
class Classify:
    def prepare(
        self, model: SequenceModel, *, batch: int, seq_len: int, device: torch.device,
        dtype: torch.dtype, seed: int,
    ) -> Prepared:
        x = make_inputs(model, batch, seq_len, device, dtype, seed)
        g = torch.Generator(device="cpu").manual_seed(seed + 1)
        target = torch.randint(0, model.output_size, (batch,), generator=g).to(device)

        checked = FirstCall("forward_last", (batch, model.output_size), x.dtype)

        def loss() -> torch.Tensor:
            logits = checked(model.forward_last(x))
            if logits.element_size() < 4:  # 16-bit logits: the loss in float32
                logits = logits.float()
            return F.cross_entropy(logits, target)

        return training_step(model, loss, batch * seq_len, (x, target),
                             cost=lambda: training_cost(  # the passes this step runs
                                 model, LAST, batch=batch, n=seq_len, itemsize=dtype.itemsize,
                                 loss=cross_entropy_loss(batch, model.output_size,
                                                         max(dtype.itemsize, 4))))
