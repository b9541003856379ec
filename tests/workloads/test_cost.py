"""What a workload's timed call costs (``workloads/cost.py``): the passes each workload
declares, composed with the adapter's own pass costs. The expected figures are counted
by hand from a stand-in adapter whose pass costs are fixed numbers."""

from __future__ import annotations

import pytest
import torch

import architectures
import workloads
from architectures import cost as C
from architectures.cost import Cost
from workloads.cost import stream_cost

CPU = torch.device("cpu")


class Fixed(architectures.SequenceModel):
    """Linear(1, 1) (2 parameters) whose passes cost fixed numbers: ``SEQUENCE`` 10
    FLOPs / 100 bytes, ``LAST`` 1 / 10, a step ``step(t)`` (t: the token's position)."""

    info = architectures.AdapterInfo("fixed", "test", "", True, True, "O(n)", "O(n)")

    def __init__(self, step=lambda t: Cost(t, 2 * t)) -> None:
        super().__init__(1, 1)
        self.proj = torch.nn.Linear(1, 1)
        self.step_cost = step
        self.asked: list[str] = []

    def forward_sequence(self, x):
        return self.proj(x)

    def init_state(self, batch, device=None, dtype=None):
        return None

    def step(self, x_t, state):
        return self.proj(x_t), state

    def cost(self, pass_, *, batch, n, itemsize):
        self.asked.append(pass_)
        return {C.SEQUENCE: Cost(10, 100), C.LAST: Cost(1, 10)}.get(pass_) or self.step_cost(n)


def prepared_cost(workload: str, model, batch: int = 2, n: int = 3) -> Cost | None:
    prep = workloads.get(workload).prepare(model, batch=batch, seq_len=n, device=CPU,
                                           dtype=torch.float32, seed=0)
    return prep.cost()


def test_forward_is_the_sequence_pass():
    model = Fixed()
    assert prepared_cost("forward", model) == Cost(10, 100) and model.asked == [C.SEQUENCE]


def test_train_is_forward_and_loss_three_times_and_adamw():
    """batch 2, n 3, output 1: MSE over 6 outputs, 3 FLOPs each = 18, reading outputs
    and targets 2·6·4 = 48 bytes. (10 + 18)·3 = 84 FLOPs, (100 + 48)·3 = 444 bytes;
    AdamW on 2 parameters: 14·2 = 28 FLOPs, 7·2·4 = 56 bytes. 112 FLOPs, 500 bytes."""
    model = Fixed()
    assert prepared_cost("train", model) == Cost(112, 500) and model.asked == [C.SEQUENCE]


def test_classify_trains_on_the_last_position():
    """cross-entropy over 2 rows of 1 logit: 6·2 = 12 FLOPs, 2·4 = 8 bytes; (1 + 12)·3 =
    39, (10 + 8)·3 = 54; AdamW 28 FLOPs, 56 bytes: 67 FLOPs, 110 bytes."""
    model = Fixed()
    assert prepared_cost("classify", model) == Cost(67, 110) and model.asked == [C.LAST]


def test_stream_sums_every_step_affine_in_closed_form():
    """Step t costs t FLOPs (a growing cache): 1 + 2 + ... + 100 = 5050, bytes twice.
    Step t costing t² (not affine) is summed step by step: 100·101·201/6 = 338350."""
    assert prepared_cost("stream", Fixed(), n=100) == Cost(5050, 10100)
    model = Fixed(step=lambda t: Cost(t * t, 1))
    assert stream_cost(model, batch=1, n=100, itemsize=4) == Cost(338350, 100)
    assert len(model.asked) > 100  # the sum, not the closed form
    assert stream_cost(Fixed(), batch=1, n=1, itemsize=4) == Cost(1, 2)
    assert stream_cost(Fixed(), batch=1, n=2, itemsize=4) == Cost(3, 6)


@pytest.mark.parametrize("name", ["transformer", "lmu-attention", "lmu-fft"])
def test_a_real_stream_is_its_steps_summed(name):
    model = architectures.build(name, preset="tiny")
    n = 37
    steps = C.total([model.cost(C.STEP, batch=2, n=t, itemsize=4) for t in range(1, n + 1)])
    got = stream_cost(model, batch=2, n=n, itemsize=4)
    for a, b in ((got.flops, steps.flops), (got.bytes, steps.bytes),
                 (got.matmul_flops, steps.matmul_flops)):
        assert a == pytest.approx(b, rel=1e-12)


@pytest.mark.parametrize("workload", ["forward", "train", "classify", "stream"])
def test_no_formula_no_cost(workload):
    class Plain(Fixed):
        def cost(self, pass_, *, batch, n, itemsize):
            return None

    assert prepared_cost(workload, Plain()) is None


def test_a_built_in_training_step_costs_three_forwards_and_its_optimizer():
    model = architectures.build("lstm", preset="tiny")
    params = sum(p.numel() for p in model.parameters())
    fwd = model.cost(C.SEQUENCE, batch=2, n=3, itemsize=4)
    loss = Cost(3 * 2 * 3 * 10, 2 * 2 * 3 * 10 * 4)  # MSE over 2·3·10 outputs
    assert prepared_cost("train", model) == 3 * (fwd + loss) + Cost(14 * params, 28 * params)


def test_ops_on_constants_cost_one_forward_in_the_backward():
    """A stand-in whose sequence pass is 10 FLOPs / 100 bytes, 4 / 40 of them on
    constants: (10 + 18)·3 − 4 = 80 FLOPs, (100 + 48)·3 − 40 = 404 bytes, AdamW 28 / 56."""
    model = Fixed()
    model.cost = lambda pass_, **_: Cost(6, 60) + Cost(4, 40).fixed()
    assert prepared_cost("train", model) == Cost(108, 460, 0, 12, 120, 0)


@pytest.mark.parametrize("name", ["lmu-fft", "lmu-conv", "lmu-chunked", "lmu-seq", "lmu"])
def test_an_lmu_training_step_holds_to_the_counter(name):
    """The LMU memory's matrices and kernels are constants: its backward is the input's
    gradient alone, and the step's products and convolutions are what FlopCounterMode
    counts in a real AdamW step, to within the first layer's input gradient (counted, not
    taken: under 1% here). Counting the memory's backward twice read 1.32x on lmu-conv."""
    from torch.utils.flop_counter import FlopCounterMode

    from workloads.cost import mse_loss, training_cost

    torch.manual_seed(0)
    model = architectures.build(name, preset="tiny", chunk_size=16) if name == "lmu-chunked" \
        else architectures.build(name, preset="tiny")
    b, n, out = 2, 40, model.output_size
    x, y = torch.randn(b, n, model.input_size), torch.randn(b, n, out)
    opt = torch.optim.AdamW(model.parameters())

    def step():
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()

    counter = FlopCounterMode(display=False)
    step()  # builds and caches the kernels
    with counter:
        step()
    cost = training_cost(model, C.SEQUENCE, batch=b, n=n, itemsize=4,
                         loss=mse_loss(b * n * out, 4))
    assert cost.matmul_flops == pytest.approx(counter.get_total_flops(), rel=0.01)
