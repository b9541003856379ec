"""The parallel LMU's eq. 25 path (``forward_last``) against a hand-written eq. 25 step.

The hand step is written here from the paper, independently of the model's code: the
last memory state ``m_n = sum_k H[n-1-k] u_k`` as one matmul of the encoded input with
the reversed impulse response (built by ``impulse_response_ref``, the float64 loop of
repeated products, and flipped once), then the model's hidden and output layers from its
own weights. Outputs and every parameter's gradient must agree; the reversed kernel the
model caches must be built once per length, dtype and device, and the step must run as
one 2-D matmul, without a flip or a batched matmul (issue 26: those cost the ``lmu-fft``
classify step 1.7x over the hand step).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import architectures
from architectures.lmu import (
    impulse_response,
    impulse_response_ref,
    last_state_kernel,
    legendre_ab,
    lmu_last_state,
    lmu_last_state_ref,
    zoh,
)

CPU = torch.device("cpu")


def pair(order: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    return zoh(*legendre_ab(order, theta))


def model(name: str = "lmu-fft", **kw) -> architectures.SequenceModel:
    torch.manual_seed(0)
    cfg = dict(input_size=2, output_size=5, memory_d=3, order=16, theta=30.0, hidden_size=9)
    return architectures.build(name, **{**cfg, **kw}).double()


def hand_logits(net, x: torch.Tensor) -> torch.Tensor:
    """Eq. 25 by hand: one matmul with the reversed impulse response, then the readout."""
    b, n, _ = x.shape
    Abar, Bbar = pair(net.order, net.theta)
    R = impulse_response_ref(Abar, Bbar, n).flip(0).to(x.dtype)  # R[k] = H[n-1-k]
    u = x @ net.encoder.weight.T  # (b, n, memory_d)
    m = u.transpose(1, 2).reshape(-1, n) @ R  # (b·memory_d, order): sum_k H[n-1-k] u_k
    feats = m.reshape(b, -1)  # channel-major, as keras-lmu
    if net.hidden is None:
        return net.output(feats)
    if net.input_to_hidden:
        feats = torch.cat([feats, x[:, -1]], dim=-1)
    h = torch.tanh(feats @ net.hidden.weight.T + net.hidden.bias)
    return h @ net.output.weight.T + net.output.bias


def grads(net, logits_fn, x, y) -> dict[str, torch.Tensor]:
    net.zero_grad(set_to_none=True)
    F.cross_entropy(logits_fn(x), y).backward()
    return {k: p.grad.clone() for k, p in net.named_parameters()}


def assert_equals_hand_step(net, x, y, *, out: tuple[float, float],
                            grad: tuple[float, float]) -> None:
    """``forward_last``'s logits and every parameter's gradient against the hand step,
    within ``(rtol, atol)`` each."""
    with torch.no_grad():
        torch.testing.assert_close(net.forward_last(x), hand_logits(net, x),
                                   rtol=out[0], atol=out[1])
    want = grads(net, lambda x: hand_logits(net, x), x, y)
    got = grads(net, net.forward_last, x, y)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=grad[0], atol=grad[1], msg=k)


def data(n: int = 40, b: int = 4, dtype=torch.float64, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, 2, generator=g).to(dtype), torch.randint(0, 5, (b,), generator=g)


@pytest.mark.parametrize("name", ["lmu-fft", "lmu-conv", "lmu-chunked"])
@pytest.mark.parametrize("kw", [{}, {"memory_d": 1}, {"input_to_hidden": False},
                                {"hidden_cell": False, "input_to_hidden": False}])
def test_forward_last_and_its_gradients_equal_the_hand_step(name, kw):
    x, y = data()
    assert_equals_hand_step(model(name, **kw), x, y, out=(1e-10, 1e-12), grad=(1e-9, 1e-12))


def test_float32_step_equals_the_hand_step_at_the_paper_shape():
    """The ``small`` preset at n = 784 in float32, as the classify cell runs it."""
    torch.manual_seed(0)
    net = architectures.build("lmu-fft", preset="small")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 784, 1, generator=g), torch.randint(0, 10, (8,), generator=g)
    assert_equals_hand_step(net, x, y, out=(1e-4, 1e-5), grad=(1e-4, 1e-6))


class Ops(TorchDispatchMode):
    """The aten operators run under it (the backward's too: CPU autograd runs here)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("memory_d", [1, 3])
def test_the_step_is_one_matmul_without_flip_or_bmm(memory_d):
    net = model(memory_d=memory_d)
    x, y = data()
    F.cross_entropy(net.forward_last(x), y).backward()  # builds and caches the kernel
    with Ops() as ops:
        F.cross_entropy(net.forward_last(x), y).backward()
    assert "flip" not in ops.names and "bmm" not in ops.names, ops.names
    assert ops.names.count("mm") >= 2  # eq. 25 forward and its backward to u


def test_kernel_built_once_per_length_dtype_and_device_and_kept_over_optimizer_steps():
    net = model()
    x, y = data(n=40)
    R = net.last_kernel(40, torch.float64, CPU)
    assert R is net.last_kernel(40, torch.float64, CPU)  # cached: not rebuilt, not flipped
    assert not R.requires_grad and all(p is not R for p in net.parameters())
    # nothing trainable goes into it: after optimizer steps it is still the right kernel
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(net.forward_last(x), y).backward()
        opt.step()
    assert net.last_kernel(40, torch.float64, CPU) is R
    with torch.no_grad():
        torch.testing.assert_close(net.forward_last(x), hand_logits(net, x),
                                   rtol=1e-10, atol=1e-12)
    # a new length builds its own kernel
    x2, _ = data(n=25)
    with torch.no_grad():
        torch.testing.assert_close(net.forward_last(x2), hand_logits(net, x2),
                                   rtol=1e-10, atol=1e-12)
    assert net.last_kernel(25, torch.float64, CPU).shape == (25, 16)
    # a new dtype too (16-bit inputs share the float32 kernel: their compute dtype)
    net.float()
    assert net.last_kernel(40, torch.float32, CPU).dtype == torch.float32
    assert net.last_kernel(40, torch.bfloat16, CPU) is net.last_kernel(40, torch.float32, CPU)
    with torch.no_grad():
        torch.testing.assert_close(net.forward_last(x.float()), hand_logits(net, x.float()),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_kernel_follows_the_model_to_cuda():
    net = model()
    x, _ = data()
    with torch.no_grad():
        want = net.forward_last(x)  # the CPU kernel cached first
        net.cuda()
        got = net.forward_last(x.cuda())
    assert net.last_kernel(40, torch.float64, got.device).device.type == "cuda"
    torch.testing.assert_close(got.cpu(), want, rtol=1e-10, atol=1e-12)


# --------------------------------------------------- lmu_last_state's reversed kernel R


def test_last_state_kernel_is_the_reversed_impulse_response():
    Abar, Bbar = pair(12, 20.0)
    R = last_state_kernel(Abar, Bbar, 30, torch.float64)
    torch.testing.assert_close(R, impulse_response_ref(Abar, Bbar, 30).flip(0),
                               rtol=1e-12, atol=0)
    assert R.is_contiguous()
    assert last_state_kernel(Abar, Bbar, 30, torch.float16).dtype == torch.float32


def test_last_state_with_r_equals_h_and_the_reference():
    Abar, Bbar = pair(8, 10.0)
    g = torch.Generator().manual_seed(9)
    u = torch.randn(3, 20, 2, dtype=torch.float64, generator=g)
    ref = lmu_last_state_ref(u, Abar, Bbar)
    R = last_state_kernel(Abar, Bbar, 32, torch.float64)  # longer: its last 20 rows serve
    H = impulse_response(Abar, Bbar, 32)
    for m in (lmu_last_state(u, Abar, Bbar, R=R), lmu_last_state(u, Abar, Bbar, H=H),
              lmu_last_state(u, Abar, Bbar)):
        torch.testing.assert_close(m, ref, rtol=1e-10, atol=1e-13)
    w = torch.randn(3, 2, 8, dtype=torch.float64, generator=g)
    u_r = u.clone().requires_grad_(True)
    u_ref = u.clone().requires_grad_(True)
    (gr,) = torch.autograd.grad((lmu_last_state(u_r, Abar, Bbar, R=R) * w).sum(), u_r)
    (gw,) = torch.autograd.grad((lmu_last_state_ref(u_ref, Abar, Bbar) * w).sum(), u_ref)
    torch.testing.assert_close(gr, gw, rtol=1e-10, atol=1e-13)
    with pytest.raises(ValueError, match=r"R must have shape \(>= 20, 8\)"):
        lmu_last_state(u, Abar, Bbar, R=R[:10])
    with pytest.raises(ValueError, match="not both"):
        lmu_last_state(u, Abar, Bbar, H=H, R=R)
