"""The stepwise baselines (``lmu.step``, ``lstm.step``) the ``stream`` workload times.

Each steps by its own fast path (lmu: fused weights reused outside autograd; lstm: the
LSTM cell on the layer's weights, not ``nn.LSTM`` on a length-1 sequence); these tests
hold those paths to the sequence path, in float64 and tight, in values and gradients,
and the lmu's reused weights to every way its parameters can change.
"""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

import architectures
from tests.helpers import stream

F64 = torch.float64
IN, OUT, BATCH, N = 3, 4, 2, 17
TOL = dict(rtol=1e-12, atol=1e-12)

LMU_CONFIGS = {
    "all-paths": {},
    "no-feedback": dict(hidden_to_memory=False, memory_to_memory=False, input_to_hidden=False),
    "no-bias": dict(recurrent_bias=False),
}
LSTM_CONFIGS = {"1-layer": dict(num_layers=1), "3-layers": dict(num_layers=3)}
MODELS = [("lmu", k) for k in LMU_CONFIGS] + [("lstm", k) for k in LSTM_CONFIGS]


def make(name: str, config: str = "", dtype: torch.dtype = F64):
    torch.manual_seed(0)
    if name == "lmu":
        kw = dict(
            memory_d=2, order=6, theta=9.0, hidden_size=5, **LMU_CONFIGS[config or "all-paths"]
        )
    else:
        kw = dict(hidden_size=6, **LSTM_CONFIGS[config or "1-layer"])
    model = architectures.build(name, preset=None, input_size=IN, output_size=OUT, **kw)
    return model.to(dtype)


def inputs(n: int = N, seed: int = 1, dtype: torch.dtype = F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, n, IN, generator=g, dtype=F64).to(dtype)


@pytest.mark.parametrize(("name", "config"), MODELS)
def test_step_equals_sequence_path(name, config):
    model = make(name, config)
    x = inputs()
    with torch.no_grad():
        ys, state = stream(model, x)
        torch.testing.assert_close(ys, model(x), **TOL)
        # twice: the second stream runs on whatever the first left behind (lmu: its cache)
        torch.testing.assert_close(stream(model, x)[0], ys, rtol=0, atol=0)
    if name == "lstm":  # the state is nn.LSTM's (h_n, c_n), layer by layer
        with torch.no_grad():
            _, (h_n, c_n) = model.lstm(x)
        torch.testing.assert_close(state[0], h_n, **TOL)
        torch.testing.assert_close(state[1], c_n, **TOL)


@pytest.mark.parametrize(("name", "config"), MODELS)
def test_step_gradients_equal_sequence_path_gradients(name, config):
    """Under autograd, a loss over the stepped outputs has the sequence path's gradients,
    for every parameter and the input (twice: a first stream must leave nothing stale)."""
    model = make(name, config)
    x = inputs()
    w = torch.randn(BATCH, N, OUT, generator=torch.Generator().manual_seed(2), dtype=F64)
    params = dict(model.named_parameters())

    def grads(run):
        xg = x.clone().requires_grad_(True)
        loss = (run(xg) * w).sum()
        return torch.autograd.grad(loss, [xg, *params.values()], allow_unused=True)

    want = grads(model)
    with torch.no_grad():  # an inference stream first: a cache it leaves must not be used
        stream(model, x)
    for _ in range(2):
        got = grads(lambda xg: stream(model, xg)[0])
        for label, g, g0 in zip(["x", *params], got, want, strict=True):
            assert g is not None and g0 is not None, label
            torch.testing.assert_close(g, g0, rtol=1e-10, atol=1e-12, msg=label)


def test_lmu_step_builds_fused_weights_once_outside_autograd(monkeypatch):
    """No grad: one _fused() for a whole stream (the old step rebuilt them every token);
    autograd: one per step, so every step's graph reaches the parameters."""
    model = make("lmu")
    calls = []
    fused = model._fused
    monkeypatch.setattr(model, "_fused", lambda: calls.append(1) or fused())
    x = inputs()
    with torch.no_grad():
        stream(model, x)
        stream(model, x)
    assert len(calls) == 1
    with torch.inference_mode():  # weights built in inference mode are kept apart
        y_inf, _ = stream(model, x)
    assert len(calls) == 2
    with torch.no_grad():
        torch.testing.assert_close(y_inf, model(x), **TOL)
    calls.clear()
    stream(model, x)  # grad mode, parameters require grad
    assert len(calls) == N
    # grad mode but nothing requires grad: no graph to build, the weights are reused
    model.requires_grad_(False)
    calls.clear()
    stream(model, x)
    stream(model, x)
    assert len(calls) == 1


@pytest.mark.parametrize("config", list(LMU_CONFIGS))
def test_lmu_step_follows_in_place_parameter_updates(config):
    """Every parameter _fused() reads, changed in place under no_grad between two tokens
    of one stream: the following tokens use the new value. References: a twin that gets
    the same change and first steps after it, and the sequence path (which rebuilds its
    weights on every call) over a whole stream after the change."""
    model = make("lmu", config)
    x = inputs()
    named = dict(model.named_parameters())
    fused_params = [k for k in named if not k.startswith("head.")]
    assert {id(named[k]) for k in fused_params} == {id(q) for q in model._fused_params()}
    g = torch.Generator().manual_seed(3)
    for label in fused_params:
        twin = copy.deepcopy(model)
        with torch.no_grad():
            _, state = stream(model, x[:, :5])
            delta = 0.1 * torch.randn(named[label].shape, generator=g, dtype=F64)
            named[label].add_(delta)
            dict(twin.named_parameters())[label].add_(delta)
            ys, _ = stream(model, x[:, 5:], state)
            want, _ = stream(twin, x[:, 5:], state)
            torch.testing.assert_close(ys, want, rtol=0, atol=0, msg=f"after changing {label}")
            torch.testing.assert_close(stream(model, x)[0], model(x), **TOL, msg=label)


def test_lmu_step_follows_an_optimizer_step_and_load_state_dict():
    model = make("lmu")
    x = inputs()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(3):
        with torch.no_grad():
            before, _ = stream(model, x)
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
        with torch.no_grad():
            after, _ = stream(model, x)
            torch.testing.assert_close(after, model(x), **TOL)
        assert (after - before).abs().max() > 1e-6  # the step did change the model
    with torch.no_grad():
        stream(model, x)
    model.load_state_dict(make("lmu").state_dict())
    with torch.no_grad():
        torch.testing.assert_close(stream(model, x)[0], make("lmu")(x), **TOL)
    # assign=True puts new parameter objects in place
    other = make("lmu")
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(0.5)
        stream(model, x)
    model.load_state_dict(other.state_dict(), assign=True)
    with torch.no_grad():
        torch.testing.assert_close(stream(model, x)[0], other(x), **TOL)


def test_lmu_step_cache_stays_out_of_state_dict_copies_and_device_moves():
    model = make("lmu")
    x = inputs()
    keys = set(make("lmu").state_dict())
    with torch.no_grad():
        y0, _ = stream(model, x)
    assert model._fused_cache is not None
    assert set(model.state_dict()) == keys
    # a copy (deepcopy, pickle) does not carry the cache; each follows its own parameters
    twin = copy.deepcopy(model)
    assert twin._fused_cache is None
    assert pickle.loads(pickle.dumps(model))._fused_cache is None
    with torch.no_grad():
        for p in twin.parameters():
            p.mul_(0.5)
        torch.testing.assert_close(stream(twin, x)[0], twin(x), **TOL)
        torch.testing.assert_close(stream(model, x)[0], y0, rtol=0, atol=0)
    # .to(): the same parameter objects, new tensors behind them
    model.to(torch.float32)
    assert model._fused_cache is None
    with torch.no_grad():
        y32, _ = stream(model, x.float())
        assert y32.dtype == torch.float32
        torch.testing.assert_close(y32, model(x.float()), rtol=1e-5, atol=1e-6)
        model.to(F64)
        torch.testing.assert_close(stream(model, x)[0], y0, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(stream(model, x)[0], model(x), **TOL)


def test_lstm_step_runs_the_cell_not_nn_lstm(monkeypatch):
    """The old step ran nn.LSTM on a length-1 sequence (4x the cell's time per token)."""
    model = make("lstm", "3-layers")
    x = inputs()
    with torch.no_grad():
        want = model(x)

    def no_sequence_kernel(*args, **kwargs):
        raise AssertionError("step() called nn.LSTM")

    monkeypatch.setattr(model.lstm, "forward", no_sequence_kernel)
    with torch.no_grad():
        torch.testing.assert_close(stream(model, x)[0], want, **TOL)
