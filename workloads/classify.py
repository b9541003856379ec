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
from workloads.base import Prepared, make_inputs
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
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def run() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            logits = model.forward_last(x)
            if logits.element_size() < 4:  # 16-bit logits: the loss in float32
                logits = logits.float()
            loss = F.cross_entropy(logits, target)
            loss.backward()
            opt.step()  # its foreach kernels have no FLOP formula: counts are fwd + bwd
            return loss

        return Prepared(run=run, tokens=batch * seq_len)
