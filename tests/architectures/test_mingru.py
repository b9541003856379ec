"""minGRU / minLSTM: the log-space scan against the plain recurrence; the models' parallel
forward against the cells written out by hand from the paper's equations."""

from __future__ import annotations

import pytest
import torch

import architectures
import architectures.mingru  # noqa: F401  registers "mingru", "minlstm"
from architectures.mingru import g, log_g, log_space_scan, recurrence_ref, softplus
from architectures.mingru.model import MinGRUMixer, MinLSTMMixer


def rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return ((y.double() - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize("n", [1, 5, 300])
def test_log_space_scan_matches_recurrence(n):
    gen = torch.Generator().manual_seed(n)
    a = torch.rand(2, n, 3, generator=gen, dtype=torch.float64) * 0.98 + 0.01
    b = torch.rand(2, n, 3, generator=gen, dtype=torch.float64) * 2 + 1e-3
    h = log_space_scan(torch.log(a), torch.log(b))
    torch.testing.assert_close(h, recurrence_ref(a, b), rtol=1e-11, atol=0)


def test_g_and_log_g():
    x = torch.linspace(-30, 30, 601, dtype=torch.float64)
    want = torch.where(x >= 0, x + 0.5, 1 / (1 + torch.exp(-x)))
    torch.testing.assert_close(g(x), want, rtol=1e-15, atol=0)
    torch.testing.assert_close(log_g(x), torch.log(want), rtol=1e-13, atol=1e-15)
    assert g(torch.tensor(0.0)) == 0.5  # continuous at 0: sigmoid(0) = 0 + 0.5


def test_log_space_scan_gradients():
    gen = torch.Generator().manual_seed(0)
    la = torch.log(torch.rand(1, 6, 2, generator=gen, dtype=torch.float64)).requires_grad_(True)
    lb = torch.randn(1, 6, 2, generator=gen, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(log_space_scan, (la, lb))


def hand_mingru(mixer: MinGRUMixer, x: torch.Tensor) -> torch.Tensor:
    """Feng et al. 2024, Algorithm (sequential mode), scalar-free but step by step."""
    W = mixer.to_gates.weight
    Wh, Wz = W[: mixer.d_hidden], W[mixer.d_hidden :]
    h = x.new_zeros(x.shape[0], mixer.d_hidden)
    out = []
    for t in range(x.shape[1]):
        z = torch.sigmoid(x[:, t] @ Wz.T)
        h_tilde = x[:, t] @ Wh.T
        h = (1 - z) * h + z * torch.where(h_tilde >= 0, h_tilde + 0.5, torch.sigmoid(h_tilde))
        out.append(h @ mixer.out.weight.T)
    return torch.stack(out, 1)


def hand_minlstm(mixer: MinLSTMMixer, x: torch.Tensor) -> torch.Tensor:
    Wh, Wf, Wi = mixer.to_gates.weight.chunk(3, dim=0)
    h = x.new_zeros(x.shape[0], mixer.d_hidden)
    out = []
    for t in range(x.shape[1]):
        f, i = torch.sigmoid(x[:, t] @ Wf.T), torch.sigmoid(x[:, t] @ Wi.T)
        h_tilde = x[:, t] @ Wh.T
        g_t = torch.where(h_tilde >= 0, h_tilde + 0.5, torch.sigmoid(h_tilde))
        h = f / (f + i) * h + i / (f + i) * g_t
        out.append(h @ mixer.out.weight.T)
    return torch.stack(out, 1)


@pytest.mark.parametrize("cls,hand", [(MinGRUMixer, hand_mingru), (MinLSTMMixer, hand_minlstm)])
@pytest.mark.parametrize("expand", [1, 2])
def test_parallel_forward_equals_hand_written_cell(cls, hand, expand):
    torch.manual_seed(0)
    mixer = cls(6, expand).double()
    x = 3 * torch.randn(2, 41, 6, dtype=torch.float64)  # both branches of g exercised
    with torch.no_grad():
        torch.testing.assert_close(mixer(x), hand(mixer, x), rtol=1e-10, atol=1e-12)


# Measured (CPU, torch 2.13, 16 channels, gates ~ N(0, 1), seeds 0 and 1): the float32
# log-space scan's max relative error against the float64 recurrence was 4.8e-5 at
# n = 784 and 1.8e-4 at n = 4096: it grows with n because log h = a* + logcumsumexp(·)
# cancels two terms of size |a*_t| ~ 0.7 t (module docstring). Bound: ~4x the n = 784 figure.
def test_float32_log_space_scan_precision_at_psmnist_length():
    gen = torch.Generator().manual_seed(0)
    k = torch.randn(2, 784, 16, generator=gen, dtype=torch.float64)
    h_tilde = torch.randn(2, 784, 16, generator=gen, dtype=torch.float64)
    z = torch.sigmoid(k)
    ref = recurrence_ref(1 - z, z * g(h_tilde))
    k32, h32 = k.float(), h_tilde.float()
    h = log_space_scan(-softplus(k32), -softplus(-k32) + log_g(h32))
    assert rel_err(h, ref) < 2e-4


def test_bad_config_raises():
    with pytest.raises(ValueError, match="expand"):
        architectures.build("mingru", preset="tiny", expand=0)
    with pytest.raises(ValueError, match="mlp_ratio"):
        architectures.build("minlstm", preset="tiny", mlp_ratio=-1)
