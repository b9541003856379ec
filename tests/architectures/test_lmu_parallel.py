"""The LMU memory's four modes and the parallel LMU adapters, against the float64 recurrence."""

from __future__ import annotations

import pytest
import torch

import architectures
from architectures.lmu import (
    DEFAULT_CHUNK_SIZE,
    MODES,
    impulse_response,
    legendre_ab,
    lmu_last_state,
    lmu_last_state_ref,
    lmu_memory,
    lmu_memory_ref,
    zoh,
)
from architectures.lmu.memory import fft_length
from architectures.lmu.parallel import ParallelLMU
from tests.helpers import stream

PARALLEL = ("lmu-fft", "lmu-conv", "lmu-chunked")
SAME_MODEL = ("lmu-seq", *PARALLEL)  # one model, four ways to compute its memory


def pair(order: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    return zoh(*legendre_ab(order, theta))


def rel_err(m: torch.Tensor, ref: torch.Tensor) -> float:
    return ((m.double() - ref).abs().max() / ref.abs().max()).item()


# ---------------------------------------------------------------- lmu_memory, float64


CASES = [  # (batch, n, channels, order, theta, chunk_size)
    (2, 1, 3, 6, 4.0, None),
    (1, 37, 2, 12, 20.0, 8),  # ragged last chunk
    (3, 64, 1, 16, 50.0, 16),  # exact chunks
    (2, 50, 2, 8, 10.0, 64),  # one chunk longer than n
    (1, 300, 2, 32, 100.0, None),  # default chunk 256, ragged
    (1, 200, 1, 64, 60.0, 1),  # chunk of one step: a pure carried recurrence
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("b,n,c,order,theta,chunk", CASES)
def test_modes_match_recurrence_float64(mode, b, n, c, order, theta, chunk, device):
    Abar, Bbar = pair(order, theta)
    u = torch.randn(b, n, c, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    ref = lmu_memory_ref(u, Abar, Bbar)
    m = lmu_memory(u.to(device), Abar, Bbar, mode, chunk if mode == "chunked" else None)
    assert m.shape == (b, n, c, order) and m.dtype == torch.float64
    assert m.device.type == device.type
    assert rel_err(m.cpu(), ref) <= 1e-9


def test_reference_matches_hand_recurrence():
    """The reference itself, against a scalar loop written out element by element."""
    Abar, Bbar = pair(3, 2.0)
    u = torch.randn(1, 5, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = lmu_memory_ref(u, Abar, Bbar)
    m = [0.0, 0.0, 0.0]
    for t in range(5):
        m = [sum(Abar[i, j].item() * m[j] for j in range(3)) + Bbar[i].item() * u[0, t, 0].item()
             for i in range(3)]  # fmt: skip
        assert ref[0, t, 0].tolist() == pytest.approx(m, rel=1e-13, abs=1e-15)


# Measured on CPU (torch 2.13, n = 4096, order 256, θ = 784, u ~ N(0, 1), seeds 0 and 1,
# also θ = 4096): max |m - ref| / max |ref| was at most sequential 8.6e-6 (round-off
# accumulating over 4096 recurrent steps), fft 2.6e-7, conv 2.1e-6 (4096-term sums),
# chunked 8.4e-7. Tolerances are those figures with about 4x margin.
FLOAT32_TOL = {"sequential": 3e-5, "fft": 1e-6, "conv": 8e-6, "chunked": 4e-6}


@pytest.fixture(scope="module")
def long_case():
    Abar, Bbar = pair(256, 784.0)
    u = torch.randn(1, 4096, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    return Abar, Bbar, u, lmu_memory_ref(u, Abar, Bbar)


@pytest.mark.parametrize("mode", MODES)
def test_float32_error_at_order256_n4096(mode, long_case, device, monkeypatch):
    # cuDNN convolutions default to TF32 on Ampere+ (~1e-3); this checks true float32.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    Abar, Bbar, u, ref = long_case
    m = lmu_memory(u.float().to(device), Abar, Bbar, mode)
    assert m.dtype == torch.float32
    err = rel_err(m.cpu(), ref)
    assert err <= FLOAT32_TOL[mode], f"{mode}: relative error {err:.3g}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mode", MODES)
def test_16bit_input_is_computed_in_float32(mode, dtype):
    Abar, Bbar = pair(16, 30.0)
    u = torch.randn(2, 40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    u16 = u.to(dtype)
    m = lmu_memory(u16, Abar, Bbar, mode)
    assert m.dtype == dtype
    ref = lmu_memory_ref(u16.double(), Abar, Bbar)  # same rounded input
    assert rel_err(m, ref) <= 2 * torch.finfo(dtype).eps  # only the output rounding


@pytest.mark.parametrize("mode", MODES)
def test_gradients_wrt_u_match_reference(mode):
    Abar, Bbar = pair(10, 15.0)
    g = torch.Generator().manual_seed(4)
    u = torch.randn(2, 45, 3, dtype=torch.float64, generator=g)
    w = torch.randn(2, 45, 3, 10, dtype=torch.float64, generator=g)
    u_ref = u.clone().requires_grad_(True)
    (grad_ref,) = torch.autograd.grad((lmu_memory_ref(u_ref, Abar, Bbar) * w).sum(), u_ref)
    u_mode = u.clone().requires_grad_(True)
    chunk = 8 if mode == "chunked" else None
    (grad,) = torch.autograd.grad((lmu_memory(u_mode, Abar, Bbar, mode, chunk) * w).sum(), u_mode)
    assert rel_err(grad, grad_ref) <= 1e-9


def test_fft_length_is_minimal_smooth_and_long_enough():
    def smooth(v: int) -> bool:
        for p in (2, 3, 5):
            while v % p == 0:
                v //= p
        return v == 1

    for n in range(1, 400):
        L = fft_length(n)
        assert L >= 2 * n - 1 and smooth(L)
        assert not any(smooth(v) for v in range(2 * n - 1, L)), n
    assert fft_length(4096) == 8192 and fft_length(784) == 1600


def test_default_chunk_size_is_documented_value():
    assert DEFAULT_CHUNK_SIZE == 256


def test_memory_bad_input_names_value():
    Abar, Bbar = pair(4, 5.0)
    u = torch.randn(1, 10, 2)
    with pytest.raises(ValueError, match="'bogus'.*sequential, fft, conv, chunked"):
        lmu_memory(u, Abar, Bbar, "bogus")
    with pytest.raises(ValueError, match=r"rank 3.*\(10, 2\)"):
        lmu_memory(u[0], Abar, Bbar, "fft")
    with pytest.raises(ValueError, match="floating-point"):
        lmu_memory(torch.ones(1, 10, 2, dtype=torch.int64), Abar, Bbar, "fft")
    with pytest.raises(ValueError, match=r"Bbar must have shape \(4,\)"):
        lmu_memory(u, Abar, Bbar[:3], "fft")
    with pytest.raises(ValueError, match="Abar must be a square"):
        lmu_memory(u, Abar[:, :3], Bbar, "fft")
    for bad in (0, -2, 3.5):
        with pytest.raises(ValueError, match=f"chunk_size.*{bad!r}"):
            lmu_memory(u, Abar, Bbar, "chunked", bad)
    with pytest.raises(ValueError, match="chunk_size=8 only applies"):
        lmu_memory(u, Abar, Bbar, "fft", 8)


# ---------------------------------------------------------- the last state (eq. 25)


@pytest.mark.parametrize("b,n,c,order,theta,chunk", CASES)
def test_last_state_matches_recurrence_float64(b, n, c, order, theta, chunk):
    Abar, Bbar = pair(order, theta)
    u = torch.randn(b, n, c, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    ref = lmu_last_state_ref(u, Abar, Bbar)
    m = lmu_last_state(u, Abar, Bbar)
    assert m.shape == (b, c, order) and m.dtype == torch.float64
    assert rel_err(m, ref) <= 1e-9


def test_last_state_reference_is_the_recurrences_last_state():
    Abar, Bbar = pair(12, 20.0)
    u = torch.randn(2, 40, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(
        lmu_last_state_ref(u, Abar, Bbar), lmu_memory_ref(u, Abar, Bbar)[:, -1], rtol=0, atol=0
    )


# Measured on CPU (torch 2.13, order 256, θ = 784, u ~ N(0, 1), 2 channels, seeds 0 and 1,
# n = 784 / 4096 / 16384): max |m - ref| / max |ref| of lmu_last_state in float32 was at
# most 6.4e-7 (3.2e-7 .. 6.4e-7; the last position of the fft mode: 1.9e-7 .. 3.0e-7,
# of chunked: 5.4e-7 .. 7.6e-7). The bound is that figure with about 3x margin, between
# the fft and chunked modes' own bounds above.
LAST_STATE_FLOAT32_TOL = 2e-6


@pytest.mark.slow
def test_last_state_float32_error_at_order256_n16384():
    Abar, Bbar = pair(256, 784.0)
    u = torch.randn(1, 16384, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = lmu_last_state_ref(u, Abar, Bbar)
    m = lmu_last_state(u.float(), Abar, Bbar)
    assert m.dtype == torch.float32
    err = rel_err(m, ref)
    assert err <= LAST_STATE_FLOAT32_TOL, f"relative error {err:.3g}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_last_state_16bit_is_computed_in_float32(dtype):
    Abar, Bbar = pair(16, 30.0)
    u16 = torch.randn(2, 40, 2, generator=torch.Generator().manual_seed(3)).to(dtype)
    m = lmu_last_state(u16, Abar, Bbar)
    assert m.dtype == dtype
    assert rel_err(m, lmu_last_state_ref(u16.double(), Abar, Bbar)) <= 2 * torch.finfo(dtype).eps


def test_last_state_gradient_matches_reference():
    Abar, Bbar = pair(10, 15.0)
    g = torch.Generator().manual_seed(4)
    u = torch.randn(2, 45, 3, dtype=torch.float64, generator=g)
    w = torch.randn(2, 3, 10, dtype=torch.float64, generator=g)
    u_ref = u.clone().requires_grad_(True)
    (grad_ref,) = torch.autograd.grad((lmu_last_state_ref(u_ref, Abar, Bbar) * w).sum(), u_ref)
    u_new = u.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((lmu_last_state(u_new, Abar, Bbar) * w).sum(), u_new)
    assert rel_err(grad, grad_ref) <= 1e-9


def test_last_state_accepts_a_longer_kernel_and_rejects_a_wrong_one():
    Abar, Bbar = pair(8, 10.0)
    u = torch.randn(1, 20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    H = impulse_response(Abar, Bbar, 32)  # longer than n: only the first n rows are used
    torch.testing.assert_close(lmu_last_state(u, Abar, Bbar, H=H), lmu_last_state(u, Abar, Bbar))
    with pytest.raises(ValueError, match=r"H must have shape \(>= 20, 8\)"):
        lmu_last_state(u, Abar, Bbar, H=H[:10])
    with pytest.raises(ValueError, match="rank 3"):
        lmu_last_state(u[0], Abar, Bbar)


# ---------------------------------------------------------------- the parallel LMU model


def small_model(name: str, **kw):
    torch.manual_seed(0)
    cfg = dict(input_size=2, output_size=4, memory_d=3, order=16, theta=20.0, hidden_size=7)
    if name == "lmu-chunked":
        cfg["chunk_size"] = 8
    return architectures.build(name, preset=None, **{**cfg, **kw}).double()


def manual_forward(model, x: torch.Tensor) -> torch.Tensor:
    """The model's equations written out with the reference memory."""
    u = x @ model.encoder.weight.T
    m = lmu_memory_ref(u, *pair(model.order, model.theta))
    feats = torch.cat([m.flatten(-2), x], dim=-1)
    h = torch.tanh(feats @ model.hidden.weight.T + model.hidden.bias)
    return h @ model.output.weight.T + model.output.bias


@pytest.mark.parametrize("name", PARALLEL)
def test_forward_matches_written_out_equations(name):
    model = small_model(name)
    x = torch.randn(3, 37, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(model(x), manual_forward(model, x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", PARALLEL)
def test_step_loop_equals_forward(name):
    model = small_model(name)
    x = torch.randn(3, 37, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        state = model.init_state(3, dtype=torch.float64)
        assert state.shape == (3, 3, 16)
        ys, _ = stream(model, x, state)
        torch.testing.assert_close(ys, model(x), rtol=1e-12, atol=1e-13)


def test_three_modes_agree_with_shared_weights():
    models = [small_model(n) for n in PARALLEL]
    for m in models[1:]:
        m.load_state_dict(models[0].state_dict())
    x = torch.randn(2, 50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ys = [m(x) for m in models]
    for y in ys[1:]:
        torch.testing.assert_close(y, ys[0], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", ["lmu-conv", "lmu-chunked"])
def test_direct_modes_are_exactly_causal(name):
    model = small_model(name)
    x = torch.randn(2, 30, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    x2 = x.clone()
    x2[:, 17] += 1.0
    with torch.no_grad():
        assert torch.equal(model(x)[:, :17], model(x2)[:, :17])


def test_keras_lmu_benchmark_shape_parameter_count():
    model = architectures.build(
        "lmu-fft", input_size=1, output_size=10, memory_d=32, order=256, theta=784, hidden_size=212
    )
    # keras-lmu LMUFeedforward(memory_d, order, hidden_cell=Dense(212), input_to_hidden=True,
    # use_bias=False) + Dense(10): encoder kernel + hidden Dense([m, x]) + output Dense.
    d, order, hidden, inp, out = 32, 256, 212, 1, 10
    keras = inp * d + (d * order + inp) * hidden + hidden + hidden * out + out
    assert model.num_params() == keras == 1_739_290


def test_options_change_parameter_count_as_keras_does():
    base = architectures.build("lmu-conv", preset=None, memory_d=2, order=8, hidden_size=5)
    no_x = architectures.build(
        "lmu-conv", preset=None, memory_d=2, order=8, hidden_size=5, input_to_hidden=False
    )
    bias = architectures.build("lmu-conv", preset=None, memory_d=2, order=8, hidden_size=5,
                               use_bias=True)  # fmt: skip
    ident = architectures.build(
        "lmu-conv", preset=None, memory_d=2, order=8, hidden_size=10, output_layer=False
    )
    assert base.num_params() == 1 * 2 + (16 + 1) * 5 + 5 + 5 * 10 + 10
    assert no_x.num_params() == base.num_params() - 5
    assert bias.num_params() == base.num_params() + 2
    assert ident.num_params() == 2 + (16 + 1) * 10 + 10
    x = torch.randn(2, 9, 1)
    assert ident(x).shape == (2, 9, 10) and (ident(x).abs() <= 1).all()  # y = h = tanh(.)


def test_registry_metadata_is_honest():
    complexity = {"lmu-fft": "O(n log n)", "lmu-conv": "O(n^2)", "lmu-chunked": "O(n·(c+order))"}
    for name in PARALLEL:
        info = architectures.info(name)
        assert info.family == "lmu" and info.parallel_training and info.stepwise
        assert info.time_complexity == complexity[name]
        assert info.memory_complexity == "O(n)" and info.step_memory == "O(1)"
        model = architectures.build(name, preset="tiny")
        assert model.info.name == name
        assert model.mode == name.removeprefix("lmu-")


def test_presets_identical_across_modes():
    for preset in ("tiny", "small", "base"):
        configs = [architectures.preset_config(n, preset) for n in PARALLEL]
        assert configs[0] == configs[1] == configs[2]


def test_kernel_cache_is_per_instance_and_keyed():
    a, b = small_model("lmu-fft"), small_model("lmu-fft")
    k1 = a.kernels(20, torch.float64, torch.device("cpu"))
    assert a.kernels(20, torch.float64, torch.device("cpu")) is k1
    assert a.kernels(20, torch.float32, torch.device("cpu")).H.dtype == torch.float32
    assert b.kernels(20, torch.float64, torch.device("cpu")) is not k1
    for n in range(21, 30):  # bounded, not a leak over many lengths
        a.kernels(n, torch.float64, torch.device("cpu"))
    assert len(a._kernels) <= 4


def test_precision_of_the_matrices_survives_model_float():
    """model.float() must not round Abar: kernels are still built from float64."""
    model = small_model("lmu-fft").float()
    k = model.kernels(40, torch.float32, torch.device("cpu"))
    Abar, Bbar = pair(16, 20.0)
    from architectures.lmu import impulse_response

    torch.testing.assert_close(k.H, impulse_response(Abar, Bbar, 40).float(), rtol=0, atol=0)


def test_model_bad_input_names_value():
    with pytest.raises(ValueError, match="order.*0"):
        architectures.build("lmu-fft", preset=None, order=0)
    with pytest.raises(ValueError, match="theta.*-1"):
        architectures.build("lmu-conv", preset=None, theta=-1.0)
    with pytest.raises(ValueError, match="theta.*0"):
        architectures.build("lmu-chunked", preset=None, theta=0)
    with pytest.raises(ValueError, match="'bogus'.*sequential, fft, conv, chunked"):
        ParallelLMU(1, 10, mode="bogus")
    with pytest.raises(ValueError, match=r"unknown configuration key\(s\) \['mode'\]"):
        architectures.build("lmu-fft", mode="conv")
    with pytest.raises(ValueError, match=r"\['chunk_size'\]"):
        architectures.build("lmu-fft", chunk_size=16)
    with pytest.raises(ValueError, match="hidden_size"):
        architectures.build("lmu-fft", preset=None, hidden_size=7, output_layer=False)
    model = architectures.build("lmu-fft", preset="tiny")
    with pytest.raises(ValueError, match=r"rank 3.*\(5, 1\)"):
        model(torch.randn(5, 1))
    with pytest.raises(ValueError, match="feature size 2"):
        model(torch.randn(1, 5, 2))
    with pytest.raises(ValueError, match="int64"):
        model(torch.ones(1, 5, 1, dtype=torch.int64))
    with pytest.raises(ValueError, match="rank 2"):
        model.step(torch.randn(1, 5, 1), model.init_state(1))


@pytest.mark.parametrize("name", SAME_MODEL)
def test_forward_last_is_eq25_with_the_readout_once(name):
    """The model's last output, written out: reference last state, then the readout."""
    model = small_model(name)
    x = torch.randn(3, 37, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = manual_forward(model, x)[:, -1]
        torch.testing.assert_close(model.forward_last(x), want, rtol=1e-10, atol=1e-12)


def test_lmu_seq_is_the_same_model_as_lmu_fft():
    """Same seed and configuration: identical parameters, and identical outputs."""
    seq, fft = small_model("lmu-seq"), small_model("lmu-fft")
    for (ka, pa), (kb, pb) in zip(seq.state_dict().items(), fft.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(pa, pb), ka
    x = torch.randn(2, 40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(seq(x), fft(x), rtol=1e-12, atol=1e-13)
    info = architectures.info("lmu-seq")
    assert seq.mode == "sequential" and not info.parallel_training and info.stepwise
    for preset in ("tiny", "small", "base", "paper-psmnist", "keras-benchmark"):
        assert architectures.preset_config("lmu-seq", preset) == architectures.preset_config(
            "lmu-fft", preset
        )


def test_without_hidden_cell_the_memory_feeds_the_output():
    """keras-lmu's hidden_cell=None: y = W_o m + b_o, no hidden layer, no input skip."""
    model = small_model("lmu-fft", hidden_cell=False, input_to_hidden=False)
    assert model.hidden is None
    d, order, inp, out = 3, 16, 2, 4
    assert model.num_params() == inp * d + (d * order) * out + out
    x = torch.randn(2, 30, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    m = lmu_memory_ref(x @ model.encoder.weight.T, *pair(order, 20.0))
    want = m.flatten(-2) @ model.output.weight.T + model.output.bias
    with torch.no_grad():
        torch.testing.assert_close(model(x), want, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(model.forward_last(x), want[:, -1], rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="input_to_hidden must be False"):
        small_model("lmu-fft", hidden_cell=False)
    with pytest.raises(ValueError, match=r"memory_d \* order \(48\) must equal output_size"):
        small_model("lmu-fft", hidden_cell=False, input_to_hidden=False, output_layer=False)


def test_one_kernel_cache_serves_every_path():
    """forward, forward_last and step share one bounded cache (was two copies of the LRU)."""
    model = small_model("lmu-fft")
    x = torch.randn(1, 10, 2, dtype=torch.float64)
    with torch.no_grad():
        model(x)
        model.forward_last(x)
        model.step(x[:, 0], model.init_state(1, dtype=torch.float64))
    kinds = sorted(key[2] for key in model._kernels)
    assert kinds == ["fft", "last", "sequential"]
    for n in range(11, 20):
        model.last_kernel(n, torch.float64, torch.device("cpu"))
    assert len(model._kernels) <= 4

