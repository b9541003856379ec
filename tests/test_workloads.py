"""Workloads do what they say, deterministically, on any adapter."""

from __future__ import annotations

import pytest
import torch

import architectures
import workloads


def build(name: str, **kw):
    torch.manual_seed(0)
    return architectures.build(name, preset="tiny", **kw).double()


def prepared(name: str, workload: str, n: int = 24, batch: int = 2, model=None):
    model = model or build(name)
    return model, workloads.get(workload).prepare(
        model, batch=batch, seq_len=n, device=torch.device("cpu"), dtype=torch.float64, seed=3
    )


def test_inputs_are_deterministic_per_seed():
    m = build("lstm")
    a = workloads.make_inputs(m, 2, 8, torch.device("cpu"), torch.float32, seed=1)
    b = workloads.make_inputs(m, 2, 8, torch.device("cpu"), torch.float32, seed=1)
    c = workloads.make_inputs(m, 2, 8, torch.device("cpu"), torch.float32, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (2, 8, m.input_size)


def test_forward_equals_model_on_the_inputs_without_grad():
    model, p = prepared("lmu-fft", "forward")
    y = p.run()
    x = workloads.make_inputs(model, 2, 24, torch.device("cpu"), torch.float64, seed=3)
    assert not y.requires_grad
    torch.testing.assert_close(y, model(x), rtol=0, atol=0)
    assert p.tokens == 48


def test_train_step_updates_every_parameter_and_lowers_the_loss():
    model, p = prepared("lmu-chunked", "train")
    before = [q.detach().clone() for q in model.parameters()]
    losses = [p.run().item() for _ in range(30)]
    changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)]
    assert all(changed)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", ["lmu", "lmu-fft", "lstm", "transformer"])
def test_stream_matches_forward_and_reports_state(name):
    model, p = prepared(name, "stream")
    y_last = p.run()
    x = workloads.make_inputs(model, 2, 24, torch.device("cpu"), torch.float64, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(y_last, model(x)[:, -1], rtol=1e-9, atol=1e-9)
    assert p.extras["state_bytes"] > 0


def test_stream_state_is_constant_for_recurrent_and_grows_for_attention():
    def state_at(name: str, n: int) -> int:
        _, p = prepared(name, "stream", n=n, model=build(name))
        p.run()
        return p.extras["state_bytes"]

    assert state_at("lmu-fft", 16) == state_at("lmu-fft", 200)
    assert state_at("transformer", 200) > 4 * state_at("transformer", 16)


def test_unknown_workload_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"'fly'.*forward, train, stream"):
        workloads.get("fly")
