"""The contract every registered adapter keeps, checked for all of them automatically.

Parametrised over ``architectures.available()`` at collection time, so an adapter added
later is held to the same contract without editing this file. Models are the ``tiny``
preset at a non-reference shape (input 3, output 5) to catch feature-size mix-ups.
"""

from __future__ import annotations

import tomllib
from importlib import resources

import pytest
import torch

import architectures

NAMES = architectures.available()
STEPWISE = [n for n in NAMES if architectures.info(n).stepwise]
IN, OUT, BATCH, N = 3, 5, 2, 24
SIZES = tomllib.loads(resources.files("architectures").joinpath("presets.toml").read_text())[
    "sizes"
]


def make(name: str, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"):
    torch.manual_seed(0)
    model = architectures.build(name, preset="tiny", input_size=IN, output_size=OUT)
    return model.to(device=device, dtype=dtype)


def inputs(dtype=torch.float64, device="cpu", n=N, seed=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, n, IN, generator=g, dtype=torch.float64).to(device, dtype)


def test_registry_lists_the_baselines():
    assert {"lmu", "lstm", "transformer"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_output_shape_and_dtype(name, device):
    for dtype in (torch.float32, torch.float64):
        model = make(name, dtype, device)
        for n in (1, 17):
            y = model(inputs(dtype, device, n=n))
            assert y.shape == (BATCH, n, OUT)
            assert y.dtype == dtype and y.device.type == device.type
            assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_float32_agrees_with_float64(name, device):
    """Same weights in both precisions: float32 must track float64, not just run."""
    y64 = make(name, torch.float64, device)(inputs(torch.float64, device))
    y32 = make(name, torch.float32, device)(inputs(torch.float32, device))
    torch.testing.assert_close(y32.double(), y64, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("t", [0, 9, N - 1])
def test_causal(name, t):
    model = make(name)
    x = inputs()
    x2 = x.clone()
    x2[:, t] += 1.0
    with torch.no_grad():
        y, y2 = model(x), model(x2)
    # outputs before t may move only by roundoff (an FFT convolution leaks ~1e-16)
    torch.testing.assert_close(y2[:, :t], y[:, :t], rtol=0, atol=1e-10)
    assert (y2[:, t:] - y[:, t:]).abs().max() > 1e-6, "perturbing x_t changed nothing from t on"


@pytest.mark.parametrize("name", STEPWISE)
def test_step_loop_equals_forward(name, device):
    model = make(name, torch.float64, device)
    x = inputs(torch.float64, device)
    with torch.no_grad():
        y = model(x)
        state = model.init_state(BATCH, device=device, dtype=torch.float64)
        nbytes = [architectures.state_nbytes(state)]
        ys = []
        for t in range(N):
            y_t, state = model.step(x[:, t], state)
            ys.append(y_t)
            nbytes.append(architectures.state_nbytes(state))
    torch.testing.assert_close(torch.stack(ys, 1), y, rtol=1e-9, atol=1e-10)
    # the declared inference-memory class must match what the state really holds
    if model.info.step_memory == "O(1)":
        assert len(set(nbytes)) == 1 and nbytes[0] > 0, nbytes
    else:
        assert nbytes[-1] > nbytes[0], nbytes


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", [1, N])
def test_forward_last_equals_the_full_paths_last_position(name, n):
    """forward_last (the classifier's path, often a cheaper one) in float64, tight."""
    model = make(name)
    x = inputs(n=n)
    with torch.no_grad():
        full = model(x)[:, -1]
        last = model.forward_last(x)
    assert last.shape == (BATCH, OUT) and last.dtype == torch.float64
    torch.testing.assert_close(last, full, rtol=1e-9, atol=1e-10)
    # and with autograd on (a training step takes this path): same values, gradients flow
    x = x.clone().requires_grad_(True)
    last = model.forward_last(x)
    torch.testing.assert_close(last.detach(), full, rtol=1e-9, atol=1e-10)
    last.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_forward_last_validates_input(name):
    model = make(name)
    with pytest.raises(ValueError, match="input_size"):
        model.forward_last(torch.zeros(BATCH, 4, IN + 1, dtype=torch.float64))


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_seed(name):
    a, b = make(name), make(name)
    for (ka, pa), (kb, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb
        assert torch.equal(pa, pb), ka
    x = inputs()
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    torch.manual_seed(1)
    c = architectures.build(name, preset="tiny", input_size=IN, output_size=OUT).double()
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters(), strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_num_params_is_the_sum_of_parameters(name):
    model = make(name)
    assert model.num_params() == sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("preset", list(SIZES))
def test_preset_within_5_percent_of_target(name, preset):
    assert preset in architectures.presets(name), f"{name} has no {preset!r} preset"
    model = architectures.build(name, preset=preset)  # at REFERENCE_IO
    target = architectures.target_params(preset)
    assert target == SIZES[preset]
    assert abs(model.num_params() - target) <= 0.05 * target, (model.num_params(), target)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_flow_to_every_parameter(name, device):
    model = make(name, torch.float32, device)
    x = inputs(torch.float32, device).requires_grad_(True)
    model(x).square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"no gradient reached {pname}"
        assert torch.isfinite(p.grad).all(), pname
