"""The LMU's matrices, their discretisation and impulse response, against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from architectures.lmu import (
    impulse_response,
    impulse_response_ref,
    legendre_ab,
    legendre_ab_ref,
    zoh,
)

# Hand-computed from A[i,j] = (2i+1)(-1 if i<j else (-1)^(i-j+1)), B[i] = (2i+1)(-1)^i at θ=1.
HAND = {
    1: ([[-1.0]], [1.0]),
    2: ([[-1.0, -1.0], [3.0, -3.0]], [1.0, -3.0]),
    3: ([[-1.0, -1.0, -1.0], [3.0, -3.0, -3.0], [-5.0, 5.0, -5.0]], [1.0, -3.0, 5.0]),
}


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("theta", [1.0, 2.5])
def test_legendre_ab_hand_values(order, theta):
    A, B = legendre_ab(order, theta)
    A_hand, B_hand = HAND[order]
    assert A.dtype == B.dtype == torch.float64
    assert A.shape == (order, order) and B.shape == (order,)
    torch.testing.assert_close(A, torch.tensor(A_hand, dtype=torch.float64) / theta)
    torch.testing.assert_close(B, torch.tensor(B_hand, dtype=torch.float64) / theta)


@pytest.mark.parametrize("order,theta", [(1, 3.0), (5, 1.0), (12, 7.5), (40, 100)])
def test_legendre_ab_matches_loop_reference(order, theta):
    A, B = legendre_ab(order, theta)
    A_ref, B_ref = legendre_ab_ref(order, theta)
    torch.testing.assert_close(A, A_ref, rtol=0, atol=1e-15)
    torch.testing.assert_close(B, B_ref, rtol=0, atol=1e-15)


@pytest.mark.parametrize("order,theta", [(1, 1.0), (3, 2.5), (64, 100.0), (256, 784.0), (256, 1.0)])
def test_zoh_matches_scipy(order, theta):
    A, B = legendre_ab(order, theta)
    n = order
    Ad, Bd, *_ = scipy.signal.cont2discrete(
        (A.numpy(), B.numpy()[:, None], np.eye(n), np.zeros((n, 1))), 1.0, method="zoh"
    )
    Abar, Bbar = zoh(A, B)
    assert Abar.dtype == Bbar.dtype == torch.float64 and Bbar.shape == (order,)
    np.testing.assert_allclose(Abar.numpy(), Ad, rtol=0, atol=1e-10)
    np.testing.assert_allclose(Bbar.numpy(), Bd[:, 0], rtol=0, atol=1e-10)


def test_zoh_matrix_input_and_dt():
    A, B = legendre_ab(6, 4.0)
    B2 = torch.stack([B, 2 * B], dim=1)
    Ad, Bd, *_ = scipy.signal.cont2discrete(
        (A.numpy(), B2.numpy(), np.eye(6), np.zeros((6, 2))), 0.5, method="zoh"
    )
    Abar, Bbar = zoh(A, B2, dt=0.5)
    assert Bbar.shape == (6, 2)
    np.testing.assert_allclose(Abar.numpy(), Ad, rtol=0, atol=1e-12)
    np.testing.assert_allclose(Bbar.numpy(), Bd, rtol=0, atol=1e-12)


@pytest.mark.parametrize("bad", [0, -3, 2.0, True, None])
def test_bad_order_names_value(bad):
    with pytest.raises(ValueError, match=f"order.*{bad!r}"):
        legendre_ab(bad, 10.0)


@pytest.mark.parametrize("bad", [0, -1.5, float("nan"), "10"])
def test_bad_theta_names_value(bad):
    with pytest.raises(ValueError, match="theta"):
        legendre_ab(4, bad)


def test_zoh_bad_shapes():
    A, B = legendre_ab(4, 1.0)
    with pytest.raises(ValueError, match="square"):
        zoh(A[:3], B)
    with pytest.raises(ValueError, match="rows"):
        zoh(A, B[:3])
    with pytest.raises(ValueError, match="dt"):
        zoh(A, B, dt=0.0)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 64, 100, 1000])
def test_impulse_response_matches_loop_small(n):
    Abar, Bbar = zoh(*legendre_ab(8, 30.0))
    H = impulse_response(Abar, Bbar, n)
    assert H.shape == (n, 8) and H.dtype == torch.float64
    torch.testing.assert_close(H, impulse_response_ref(Abar, Bbar, n), rtol=0, atol=1e-14)
    torch.testing.assert_close(H[0], Bbar)


@pytest.mark.slow
def test_impulse_response_order256_long_matches_loop():
    """Doubling stays accurate over 2^17 steps at order 256 (θ = 2^15: H is alive long)."""
    n = 2**17
    Abar, Bbar = zoh(*legendre_ab(256, 2.0**15))
    H = impulse_response(Abar, Bbar, n)
    H_ref = impulse_response_ref(Abar, Bbar, n)
    assert torch.isfinite(H).all()
    err = (H - H_ref).abs().max() / H_ref.abs().max()
    assert err < 1e-11, f"relative error {err:.3g}"


def test_impulse_response_order256_decays_past_theta():
    """At θ = 784, n = 2^17: finite everywhere, and it dies out super-exponentially past θ."""
    theta = 784
    Abar, Bbar = zoh(*legendre_ab(256, float(theta)))
    H = impulse_response(Abar, Bbar, 2**17)
    assert torch.isfinite(H).all()
    norms = H.norm(dim=1)
    peak = norms.max()
    assert norms[: theta // 2].min() > 0.1 * peak  # alive inside the window
    assert norms[2 * theta :].max() < 1e-9 * peak
    assert norms[4 * theta :].max() < 1e-25 * peak
    assert norms[-1000:].max() < 1e-300  # no late growth from accumulated round-off


def test_impulse_response_bad_input():
    Abar, Bbar = zoh(*legendre_ab(4, 1.0))
    for n in (0, -1, 2.5):
        with pytest.raises(ValueError, match=f"n must be a positive integer, got {n!r}"):
            impulse_response(Abar, Bbar, n)
    with pytest.raises(ValueError, match="Bbar"):
        impulse_response(Abar, Bbar[:2], 4)
    with pytest.raises(ValueError, match="Abar"):
        impulse_response(Abar[0], Bbar, 4)
