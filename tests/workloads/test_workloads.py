"""Workloads do what they say, deterministically, on any adapter."""

from __future__ import annotations

from dataclasses import replace

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


# ---------------------------------------------------------------- classify


@pytest.mark.parametrize("name", ["lmu-fft", "lmu", "transformer"])
def test_classify_step_is_cross_entropy_at_the_last_position(name):
    """The first step's loss, recomputed by hand from the full path, before any update."""
    model = build(name)
    x = workloads.make_inputs(model, 3, 24, torch.device("cpu"), torch.float64, seed=3)
    g = torch.Generator().manual_seed(4)  # seed + 1, as the workload documents
    target = torch.randint(0, model.output_size, (3,), generator=g)
    with torch.no_grad():
        want = torch.nn.functional.cross_entropy(model(x)[:, -1], target)
    _, p = prepared(name, "classify", batch=3, model=model)
    assert p.tokens == 3 * 24
    torch.testing.assert_close(p.run().detach(), want, rtol=1e-9, atol=1e-12)


def test_classify_updates_every_parameter_and_lowers_the_loss():
    model, p = prepared("lmu-fft", "classify", batch=4)
    before = [q.detach().clone() for q in model.parameters()]
    losses = [p.run().item() for _ in range(30)]
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert losses[-1] < losses[0]


def test_classify_takes_the_last_position_path(monkeypatch):
    """It calls forward_last, never the full forward (that is the point of the workload)."""
    model = build("lmu-fft")

    def no_full(*a, **k):
        raise AssertionError("classify ran the full sequence path")

    monkeypatch.setattr(model, "forward_sequence", no_full)
    _, p = prepared("lmu-fft", "classify", model=model)
    assert torch.isfinite(p.run())


# ---------------------------------------------------------------- the registry


def test_workloads_declare_what_they_are():
    info = {n: workloads.info(n) for n in workloads.available()}
    assert {"forward", "train", "classify", "stream"} <= set(info)
    assert [n for n, i in info.items() if i.per_token] == ["stream"]
    assert info["classify"].last_position and info["classify"].kind == "timed"
    assert info["psdigits"].last_position and info["adding"].last_position
    assert not info["copy"].last_position and not info["train"].last_position
    for n, i in info.items():
        assert i.kind == workloads.kind(n) in workloads.KINDS
        assert (i.metric is not None) == (i.kind == "task"), n
    acc = info["psdigits"].metric
    assert (acc.name, acc.label, acc.scale, acc.higher_is_better) == (
        "accuracy", "test accuracy (%)", 100.0, True)
    assert acc.show(0.8) == pytest.approx(80.0)
    mse = info["adding"].metric
    assert not mse.higher_is_better and mse.log_scale and mse.scale == 1.0
    # the task's declaration and the record's metric name agree
    assert workloads.get("psdigits").task.metric == acc.name


def test_a_plugin_registers_a_workload(monkeypatch):
    from workloads import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @workloads.register("echo", description="forward, twice", per_token=True)
    class Echo:
        def prepare(self, model, *, batch, seq_len, device, dtype, seed):
            x = workloads.make_inputs(model, batch, seq_len, device, dtype, seed)
            return workloads.Prepared(run=lambda: model(model(x)[..., :1]), tokens=batch)

    assert "echo" in workloads.available() and workloads.info("echo").per_token
    assert isinstance(workloads.get("echo"), Echo) and Echo.name == "echo"
    model = build("lmu-fft")
    assert workloads.get("echo").prepare(model, batch=2, seq_len=5, device=torch.device("cpu"),
                                         dtype=torch.float64, seed=0).run().shape == (2, 5, 10)
    with pytest.raises(ValueError, match="'echo' is already registered"):
        workloads.register("echo", description="another")(type("Other", (), {}))
    with pytest.raises(ValueError, match="kind 'batch'; valid choices: timed, task"):
        workloads.register("x", description="", kind="batch")(type("X", (), {}))
    with pytest.raises(ValueError, match="must declare its metric"):
        workloads.register("y", description="", kind="task")(type("Y", (), {}))


def test_the_default_workload_is_declared_by_the_registry(monkeypatch):
    """``harness profile`` without --workload profiles the workload that declares itself
    the default (the harness names none); without a declaration, the first timed one."""
    import argparse

    from harness.cli.profile import add_arguments, cells_from_args
    from workloads import registry

    assert workloads.default_workload() == "train"
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--arch", "lmu", "--seq-len", "8", "--device", "cpu"])
    assert [c.workload for c in cells_from_args(args)] == ["train"]
    args = p.parse_args(["--arch", "lmu", "--seq-len", "8", "--device", "cpu",
                         "--workload", "forward,stream"])
    assert [c.workload for c in cells_from_args(args)] == ["forward", "stream"]
    monkeypatch.setattr(registry, "_REGISTRY", {
        n: replace(s, default=False) for n, s in registry._REGISTRY.items()})
    assert workloads.default_workload() == workloads.available()[0] == "forward"
    monkeypatch.setattr(registry, "_REGISTRY", {})
    with pytest.raises(ValueError, match="no timed workload"):
        workloads.default_workload()
