"""The published models' presets: their parameter counts from the papers' formulas.

Each count is computed here by formula from the layer shapes the source describes, not
read from the model, so a preset that drifts from the paper's model fails.
"""

from __future__ import annotations

import pytest
import torch

import architectures

PARALLEL = ("lmu-seq", "lmu-fft", "lmu-conv", "lmu-chunked")


def original_lmu_params(inp, d, order, hidden, out, recurrent_bias):
    """Voelker et al. (2019) LMU cell + linear classifier: encoders e_x (inp·d),
    e_h (hidden·d), e_m (d·order·d); kernels W_x (inp·hidden), W_h (hidden²),
    W_m (d·order·hidden) [+ bias]; classifier hidden·out + out."""
    encoders = inp * d + hidden * d + d * order * d
    kernels = inp * hidden + hidden * hidden + d * order * hidden
    return encoders + kernels + (hidden if recurrent_bias else 0) + hidden * out + out


def parallel_lmu_params(inp, d, order, hidden, out, *, encoder_bias, input_to_hidden=True):
    """Chilkuri & Eliasmith (2021): encoder inp→d [+ bias], hidden Dense([m, x]) → hidden,
    classifier hidden → out; without a hidden cell (hidden=None) the memory feeds it."""
    encoder = inp * d + (d if encoder_bias else 0)
    if hidden is None:
        return encoder + d * order * out + out
    hidden_in = d * order + (inp if input_to_hidden else 0)
    return encoder + hidden_in * hidden + hidden + hidden * out + out


def test_original_lmu_psmnist_model_is_102027_params():
    n = original_lmu_params(1, 1, 256, 212, 10, recurrent_bias=False)
    assert n == 102_027  # the count Voelker et al. (2019) publish
    assert architectures.build("lmu", preset="paper-psmnist").num_params() == n
    # the `small` size preset is that shape plus the recurrent bias, and says so
    small = architectures.build("lmu", preset="small").num_params()
    assert small == original_lmu_params(1, 1, 256, 212, 10, recurrent_bias=True) == n + 212


@pytest.mark.parametrize("name", PARALLEL)
def test_parallel_lmu_psmnist_model(name):
    n = parallel_lmu_params(1, 1, 468, 346, 10, encoder_bias=True)
    assert n == 166_092  # hrshtv/pytorch-lmu's psMNIST LMUFFT example; paper: about 165k
    assert architectures.build(name, preset="paper-psmnist").num_params() == n


@pytest.mark.parametrize("name", PARALLEL)
def test_keras_lmu_benchmark_model(name):
    n = parallel_lmu_params(32, 32, 256, None, 2, encoder_bias=False)
    assert n == 17_410  # LMUFeedforward(memory_d=32, order=256, hidden_cell=None) + Dense(2)
    model = architectures.build(name, preset="keras-benchmark")
    assert model.num_params() == n
    assert (model.input_size, model.output_size) == (32, 2)
    y = model.forward_last(torch.randn(2, 16, 32))
    assert y.shape == (2, 2)


def test_voelker2019_initialisation():
    torch.manual_seed(0)
    model = architectures.build("lmu", preset="paper-psmnist")
    assert model.init == "voelker2019" and model.recurrent_kernel.bias is None
    assert torch.equal(model.input_encoder.weight, torch.ones(1, 1))
    for layer in (model.hidden_encoder, model.memory_encoder, model.input_kernel,
                  model.recurrent_kernel):
        assert torch.count_nonzero(layer.weight) == 0
    w = model.memory_kernel.weight  # Xavier normal: std sqrt(2 / (fan_in + fan_out))
    assert w.std().item() == pytest.approx((2 / (256 + 212)) ** 0.5, rel=0.05)
    # at that initialisation, h_t depends on x only through the memory
    x = torch.randn(2, 30, 1)
    assert model(x).shape == (2, 30, 10)
    with pytest.raises(ValueError, match="unknown init 'xavier'; valid choices: default, "
                                         "voelker2019"):
        architectures.build("lmu", preset=None, init="xavier")


def test_published_presets_are_outside_the_size_ladder():
    sizes = {"tiny", "small", "base"}
    for name in ("lmu", *PARALLEL):
        extra = set(architectures.presets(name)) - sizes
        assert extra <= {"paper-psmnist", "keras-benchmark"}, (name, extra)
