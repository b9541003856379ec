"""The analytic cost formulas (``architectures/cost.py`` and each family's ``cost``).

Two kinds of check. Against torch's FlopCounterMode, for every registered adapter and
every pass: the formula's ``matmul_flops`` (the matmuls and convolutions the code calls)
must equal what the counter sees, exactly, on shapes that exercise each code path (a
chunked memory with several chunks, linear attention's chunk loop, odd lengths). And by
hand, for small shapes where the counter sees little or nothing (an LSTM's recurrence
inside ``nn.LSTM``, the FFT convolution, a scan of elementwise ops, CPU attention): the
expected numbers below are written out, not computed by the formulas.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import architectures
from architectures import cost as C
from architectures.cost import Cost
from architectures.lmu.cost import memory_sequence
from architectures.mamba.cost import linear_scan

NAMES = architectures.available()
# (batch, n): a short sequence, and one long enough for several linear-attention chunks
# (c = 64) and an odd length for the odd-even scan
SHAPES = [(2, 40), (3, 131)]


def counted(fn) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def complex_matmul_seen(model, n: int) -> float:
    """S4D's kernel is a complex ``bmm`` (d_model batches of (1, modes) @ (modes, n)),
    which the counter sees at 2 FLOPs per multiply-add, as if it were real; the formula
    counts it at 8 (a complex multiply-add) and outside ``matmul_flops``."""
    total = 0.0
    for layer in getattr(model, "layers", []):
        if hasattr(layer.mixer, "log_A_real"):
            d, modes = layer.mixer.log_A_real.shape
            total += 2 * d * modes * n
    return total


def passes(name: str) -> list[str]:
    return [C.SEQUENCE, C.LAST] + ([C.STEP] if architectures.info(name).stepwise else [])


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"b{s[0]}n{s[1]}")
@pytest.mark.parametrize("name", NAMES)
def test_matmul_flops_are_what_flop_counter_mode_counts(name, shape):
    batch, n = shape
    torch.manual_seed(0)
    model = architectures.build(name, preset="tiny").eval()
    x = torch.randn(batch, n, model.input_size)
    with torch.no_grad():
        model(x), model.forward_last(x)  # the cached kernels built: not part of a call
        seen = {C.SEQUENCE: counted(lambda: model(x)),
                C.LAST: counted(lambda: model.forward_last(x))}
        if architectures.info(name).stepwise:
            state = model.init_state(batch)
            for t in range(4):
                _, state = model.step(x[:, t], state)
            seen[C.STEP] = counted(lambda: model.step(x[:, 4], state))  # the 5th token
    for pass_ in passes(name):
        t = 5 if pass_ == C.STEP else n
        c = model.cost(pass_, batch=batch, n=t, itemsize=4)
        assert isinstance(c, Cost), (name, pass_)
        extra = complex_matmul_seen(model, n) if pass_ != C.STEP else 0.0
        assert c.matmul_flops + extra == seen[pass_], (name, pass_)
        # every op the counter cannot see only adds to what it can
        assert c.flops >= c.matmul_flops > 0 and c.bytes > 0, (name, pass_)


PARALLEL = ["lmu-chunked", "lmu-fft", "lmu-conv", "lmu-seq"]


@pytest.mark.parametrize("name, overrides, n", [
    ("lmu-chunked", {"chunk_size": 16}, 70),  # five chunks, the last padded: the carry
    *((name, {"memory_d": 3, "use_bias": True}, 33) for name in PARALLEL),  # channels, bias
    *((name, {"hidden_cell": False, "input_to_hidden": False}, 20)  # memory as output
      for name in PARALLEL),
])
def test_parallel_lmu_configurations_match_the_counter(name, overrides, n):
    torch.manual_seed(0)
    model = architectures.build(name, preset="tiny", **overrides).eval()
    x = torch.randn(2, n, 1)
    with torch.no_grad():
        model(x), model.forward_last(x)
        for pass_, fn in ((C.SEQUENCE, lambda: model(x)), (C.LAST, lambda: model.forward_last(x))):
            assert model.cost(pass_, batch=2, n=n, itemsize=4).matmul_flops == counted(fn)


@pytest.mark.parametrize("name, overrides", [
    ("lstm", {"num_layers": 3, "input_size": 3}),
    ("lmu", {"memory_d": 2, "hidden_to_memory": False}),
    ("lmu-attention", {"attention": False}), ("transformer", {"input_size": 4}),
])
def test_other_configurations_match_the_counter(name, overrides):
    torch.manual_seed(0)
    model = architectures.build(name, preset="tiny", **overrides).eval()
    x = torch.randn(3, 17, model.input_size)
    with torch.no_grad():
        model(x), model.forward_last(x)
        for pass_, fn in ((C.SEQUENCE, lambda: model(x)), (C.LAST, lambda: model.forward_last(x))):
            assert model.cost(pass_, batch=3, n=17, itemsize=4).matmul_flops == counted(fn)


@pytest.mark.parametrize("name", ["lmu", "lmu-seq"])
def test_where_the_counter_sees_the_arithmetic_the_totals_agree(name):
    """The stepped LMUs are matmuls with a little elementwise work around them: the
    counter sees nearly everything, and the whole analytic count must be just above it."""
    torch.manual_seed(0)
    model = architectures.build(name, preset="tiny").eval()
    x = torch.randn(4, 64, 1)
    with torch.no_grad():
        seen = counted(lambda: model(x))
    flops = model.cost(C.SEQUENCE, batch=4, n=64, itemsize=4).flops
    assert seen < flops < 1.03 * seen


# ----------------------------------------------------------------- by hand


def test_lstm_recurrence_by_hand():
    """nn.LSTM (input 1, hidden 2, one layer) + Linear(2, 1), batch 1, n = 3.

    input projection, every step at once: Linear(1, 8): 2·3·1·8 = 48, bias 3·8 = 24   →  72
    per step: h @ W_hhᵀ (2 → 8): 2·1·2·8 = 32; gates 17 per hidden unit: 17·2 = 34   →  66
    3 steps: 3·66 = 198; head Linear(2, 1) on 3 rows: 2·3·2·1 = 12, bias 3         →  15
    total 72 + 198 + 15 = 285, of which FlopCounterMode sees the head's 12 only.
    """
    torch.manual_seed(0)
    model = architectures.build("lstm", preset=None, input_size=1, output_size=1, hidden_size=2)
    c = model.cost(C.SEQUENCE, batch=1, n=3, itemsize=4)
    assert c.flops == 285
    assert c.matmul_flops == 12 == counted(lambda: model(torch.randn(1, 3, 1)))
    # one step (torch.lstm_cell): 2·1·1·8 + 8 (x W_ihᵀ + b_ih) + 32 (h W_hhᵀ) + 34 (gates)
    # + 2·1·2·1 + 1 (head) = 16 + 8 + 32 + 34 + 5 = 95; the cell's two addmm are seen: 16 + 32 + 4
    step = model.cost(C.STEP, batch=1, n=1, itemsize=4)
    assert (step.flops, step.matmul_flops) == (95, 52)


def test_fft_convolution_by_hand():
    """The LMU memory by FFT: batch 1, n = 4, one channel, order 2. fft_length(4) = 8
    (the smallest 2·3·5-smooth length ≥ 2·4 − 1 = 7), 8/2 + 1 = 5 frequencies; a real
    transform of 8 is 2.5·8·log2 8 = 60 FLOPs.

    rfft of the input: 1·60 = 60; rfft of the impulse response's 2 columns: 2·60 = 120;
    products: 1·2·5 complex multiplies at 6 = 60; irfft of 1·2 states: 2·60 = 120  → 360
    """
    c = memory_sequence("fft", batch=1, n=4, channels=1, order=2, chunk_size=None, s=4)
    assert c.flops == 360 and c.matmul_flops == 0
    # the whole lmu-fft (input 1, order 2, hidden 1, output 1), batch 1, n = 4:
    # encoder Linear(1, 1) no bias: 2·4·1·1 = 8; memory 360; hidden Linear(2 + 1, 1):
    # 2·4·3·1 = 24 + bias 4 = 28; tanh 4; output Linear(1, 1): 2·4·1·1 = 8 + bias 4 = 12
    # total 8 + 360 + 28 + 4 + 12 = 412; FlopCounterMode sees the matmuls: 8 + 24 + 8 = 40
    model = architectures.build("lmu-fft", preset=None, input_size=1, output_size=1,
                                memory_d=1, order=2, theta=4.0, hidden_size=1)
    c = model.cost(C.SEQUENCE, batch=1, n=4, itemsize=4)
    x = torch.randn(1, 4, 1)
    model(x)
    assert (c.flops, c.matmul_flops) == (412, 40) and counted(lambda: model(x)) == 40


def test_odd_even_scan_by_hand():
    """linear_scan over 4 steps of one value: pairs (0,1), (2,3) combine, 3 ops on each
    of 2 (a·a, a·b, + b) = 6; the half-length scan of 2: 3 ops on 1, its even state
    1 multiply-add = 2, so 5; the even states of the full one, a multiply-add on 2 = 4:
    6 + 5 + 4 = 15. Three steps are padded to four (one neutral step): 15 too. A batch
    of 2 sequences of 3 values each: 15·2·3 = 90."""
    assert linear_scan(1, 4, 1, 4).flops == 15
    assert linear_scan(1, 3, 1, 4).flops == 15
    assert linear_scan(2, 4, 3, 4).flops == 90
    assert linear_scan(1, 1, 1, 4).flops == 0


def test_transformer_by_hand():
    """A transformer of d_model 2, one head, one layer, d_ff 2, input 1, output 1, on
    batch 1, n = 2 (so 2 rows):

    embed Linear(1, 2): 2·2·1·2 = 8 + bias 4 = 12; positions: a divide, sine and cosine
    per pair of columns, 3·2·1 = 6, + 2 for the frequencies = 8; added: 2·2 = 4
    block: LayerNorm 7·2·2 = 28; qkv Linear(2, 6): 2·2·2·6 = 48 + 12 = 60;
      causal attention: n(n+1)/2 = 3 query-key pairs, each 2·2 (QKᵀ) + 2·2 (AV) + 5
      (softmax) = 13: 39; proj Linear(2, 2): 16 + 4 = 20; residual 4; LayerNorm 28;
      MLP Linear(2, 2) 20, GELU 4, Linear(2, 2) 20 = 44; residual 4: 227
    final LayerNorm 28; head Linear(2, 1): 2·2·2·1 = 8 + 2 = 10
    total 12 + 8 + 4 + 227 + 28 + 10 = 289; the counter sees 8 + 48 + 16 + 32 + 8 = 112
    (CPU attention is invisible to it).
    """
    model = architectures.build("transformer", preset=None, input_size=1, output_size=1,
                                d_model=2, n_layers=1, n_heads=1, d_ff=2)
    c = model.cost(C.SEQUENCE, batch=1, n=2, itemsize=4)
    assert (c.flops, c.matmul_flops) == (289, 112)
    assert counted(lambda: model(torch.randn(1, 2, 1))) == 112
    # the last position only: keys for both positions, one query (2 pairs: 26), the
    # rest of the block on 1 row: 60 + 28 (qkv, LayerNorm on 2 rows) + 26 + 10 + 2 + 14
    # + 22 + 2 = 164; embed, positions, add 24; final LayerNorm 14, head 4 + 1 = 5: 207
    assert model.cost(C.LAST, batch=1, n=2, itemsize=4).flops == 207


def test_costs_add_and_scale():
    a, b = Cost(1, 2, 1), Cost(10, 20, 0)
    assert a + b == Cost(11, 22, 1) and 3 * a == a * 3 == Cost(3, 6, 3)
    assert C.total([a, b, a]) == Cost(12, 24, 2) and C.total([]) == Cost()
    with pytest.raises(TypeError):
        a + 1  # noqa: B018
    with pytest.raises(ValueError, match="unknown pass 'backward'"):
        architectures.build("lstm", preset="tiny").cost("backward", batch=1, n=1, itemsize=4)


def test_bytes_scale_with_the_dtype_and_fft_count_is_stated():
    model = architectures.build("lmu-fft", preset="tiny")
    c32 = model.cost(C.SEQUENCE, batch=2, n=64, itemsize=4)
    c64 = model.cost(C.SEQUENCE, batch=2, n=64, itemsize=8)
    assert c64.bytes == 2 * c32.bytes and c64.flops == c32.flops
    assert C.real_fft_flops(1024) == 2.5 * 1024 * 10 and C.real_fft_flops(1) == 0
    assert math.isclose(C.real_fft_flops(12), 2.5 * 12 * math.log2(12))


def test_an_adapter_without_a_formula_has_no_cost():
    class Plain(architectures.SequenceModel):  # a plugin that declares nothing
        def __init__(self, input_size: int = 1, output_size: int = 1) -> None:
            super().__init__(input_size, output_size)
            self.proj = torch.nn.Linear(input_size, output_size)

        def forward_sequence(self, x):
            return self.proj(x)

    assert Plain().cost(C.SEQUENCE, batch=1, n=8, itemsize=4) is None
