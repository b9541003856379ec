"""The LMU's linear memory ``m_t = Abar m_{t-1} + Bbar u_t`` computed four ways.

The memory is a linear time-invariant system driven only by its input ``u``, so its
state is a causal convolution of ``u`` with the impulse response ``H[k] = Abar^k Bbar``
(Chilkuri & Eliasmith, ICML 2021). Each mode trades compute for parallelism:

* ``"sequential"``: the recurrence, one step at a time; O(n·d²), no parallelism in n.
* ``"fft"``: causal convolution with ``H`` by real FFTs; O(n log n).
* ``"conv"``: direct causal convolution (``conv1d``); O(n²), exactly causal.
* ``"chunked"``: direct convolution inside chunks of ``c`` steps plus the state carried
  between chunks by ``Abar^c``; O(n·(c + d)), exactly causal.

Precision: at order 256 ``Abar`` is far from normal (eigenvector condition ~1e15), so
nothing here diagonalises it. Kernels (``H``, powers of ``Abar``) are always built in
float64 and cast once to the compute dtype. 16-bit inputs are computed in float32
(FFTs and long sums in half precision are neither supported everywhere nor accurate)
and the result is cast back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

MODES = ("sequential", "fft", "conv", "chunked")
# Chunk length of "chunked" when none is given. Its cost per step and channel is
# c·d (the within-chunk convolution) + d² (the carried state): c = 256 balances the two
# at the reference order d = 256 and keeps the sequential scan over n/c chunks short.
DEFAULT_CHUNK_SIZE = 256


def _check_pair(Abar: torch.Tensor, Bbar: torch.Tensor) -> int:
    if not isinstance(Abar, torch.Tensor) or Abar.dim() != 2 or Abar.shape[0] != Abar.shape[1]:
        shape = tuple(Abar.shape) if isinstance(Abar, torch.Tensor) else type(Abar).__name__
        raise ValueError(f"Abar must be a square (order, order) tensor, got {shape}")
    if not isinstance(Bbar, torch.Tensor) or Bbar.dim() != 1 or Bbar.shape[0] != Abar.shape[0]:
        shape = tuple(Bbar.shape) if isinstance(Bbar, torch.Tensor) else type(Bbar).__name__
        raise ValueError(f"Bbar must have shape ({Abar.shape[0]},) to match Abar, got {shape}")
    return Abar.shape[0]


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return n


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the memory is computed in for inputs of ``dtype`` (16-bit → float32)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _doubling(first: torch.Tensor, Abar: torch.Tensor, n: int) -> torch.Tensor:
    """Rows ``X[k] = Abar^k first[...]`` for k < n, built by doubling (log n big matmuls).

    ``first`` is ``(..., d)``; returns ``(..., n, d)`` (row k on axis -2).
    """
    X = first.unsqueeze(-2)
    P = Abar
    while X.shape[-2] < n:
        take = min(X.shape[-2], n - X.shape[-2])
        X = torch.cat([X, X[..., :take, :] @ P.T], dim=-2)  # Abar^k applied to rows 0..k-1
        if X.shape[-2] < n:
            P = P @ P
    return X


def impulse_response(Abar: torch.Tensor, Bbar: torch.Tensor, n: int) -> torch.Tensor:
    """``H`` of shape ``(n, order)``, ``H[k] = Abar^k Bbar``, float64 on ``Abar``'s device.

    Doubling (``H[k:2k] = H[:k] (Abar^k)^T``) costs n·d² + d³·log n flops and stays
    accurate for n up to 2^17 at order 256, unlike float32 repeated products or an
    eigendecomposition of the non-normal ``Abar``. Cast the result once where needed.
    """
    _check_pair(Abar, Bbar)
    _check_n(n)
    return _doubling(Bbar.double(), Abar.double(), n)


def impulse_response_ref(Abar: torch.Tensor, Bbar: torch.Tensor, n: int) -> torch.Tensor:
    """Obviously-correct float64 loop of repeated products, for tests."""
    _check_pair(Abar, Bbar)
    _check_n(n)
    A, h = Abar.double(), Bbar.double()
    rows = []
    for _ in range(n):
        rows.append(h)
        h = A @ h
    return torch.stack(rows)


@dataclass(frozen=True)
class MemoryKernels:
    """Cast-once operands of ``lmu_memory`` for one (n, mode, chunk, dtype, device).

    Models build these once per shape and reuse them; ``lmu_memory`` builds them itself
    when none are given.
    """

    Abar: torch.Tensor  # (d, d), compute dtype
    Bbar: torch.Tensor  # (d,), compute dtype
    H: torch.Tensor | None  # (rows, d) impulse response: n rows (fft/conv), c (chunked)
    powers: tuple[torch.Tensor, ...] = ()  # Abar^(2^i) for the chunked carry
    chunk_power: torch.Tensor | None = None  # Abar^c
    chunk_size: int | None = None


def _resolve_mode(mode: str, chunk_size: int | None) -> int | None:
    if mode not in MODES:
        raise ValueError(f"unknown memory mode {mode!r}; valid choices: {', '.join(MODES)}")
    if chunk_size is None:
        return DEFAULT_CHUNK_SIZE if mode == "chunked" else None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    if mode != "chunked":
        raise ValueError(f"chunk_size={chunk_size} only applies to mode 'chunked', not {mode!r}")
    return chunk_size


def memory_kernels(
    Abar: torch.Tensor,
    Bbar: torch.Tensor,
    n: int,
    mode: str,
    chunk_size: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> MemoryKernels:
    """Build (in float64) and cast once everything ``mode`` needs for length ``n``."""
    _check_pair(Abar, Bbar)
    _check_n(n)
    chunk = _resolve_mode(mode, chunk_size)
    device = torch.device(device) if device is not None else Abar.device
    dtype = compute_dtype(dtype)
    A64, B64 = Abar.to(device, torch.float64), Bbar.to(device, torch.float64)
    H = powers = chunk_power = None
    if mode in ("fft", "conv"):
        H = impulse_response(A64, B64, n)
    elif mode == "chunked":
        c = min(chunk, n)
        H = impulse_response(A64, B64, c)
        pw, P = [], A64
        while 2 ** len(pw) < c:  # Abar^1, Abar^2, Abar^4, ... below c
            pw.append(P)
            P = P @ P
        powers = tuple(p.to(dtype) for p in pw)
        chunk_power = torch.linalg.matrix_power(A64, c).to(dtype)
    return MemoryKernels(
        Abar=A64.to(dtype),
        Bbar=B64.to(dtype),
        H=None if H is None else H.to(dtype),
        powers=powers or (),
        chunk_power=chunk_power,
        chunk_size=chunk,
    )


def _check_u(u: torch.Tensor, order: int) -> None:
    if not isinstance(u, torch.Tensor):
        raise ValueError(f"u must be a torch.Tensor, got {type(u).__name__}")
    if u.dim() != 3:
        raise ValueError(f"u must have rank 3 (batch, n, channels), got shape {tuple(u.shape)}")
    if not u.is_floating_point():
        raise ValueError(f"u must be a floating-point tensor, got dtype {u.dtype}")
    if u.shape[1] < 1:
        raise ValueError(f"u must have at least one time step, got shape {tuple(u.shape)}")


def lmu_memory(
    u: torch.Tensor,
    Abar: torch.Tensor,
    Bbar: torch.Tensor,
    mode: str,
    chunk_size: int | None = None,
    *,
    kernels: MemoryKernels | None = None,
) -> torch.Tensor:
    """Memory states ``m`` of shape ``(batch, n, channels, order)`` for ``u (batch, n, channels)``.

    ``m_t = Abar m_{t-1} + Bbar u_t`` from ``m_{-1} = 0``, independently per channel,
    computed by ``mode`` (see the module docstring). ``chunk_size`` (chunked only)
    defaults to ``DEFAULT_CHUNK_SIZE``. ``kernels`` (from ``memory_kernels``, same
    mode/chunk, at least ``n`` long) skips rebuilding the cast operands. Differentiable
    with respect to ``u`` in every mode; returns ``u``'s dtype.
    """
    order = _check_pair(Abar, Bbar)
    chunk = _resolve_mode(mode, chunk_size)
    _check_u(u, order)
    n = u.shape[1]
    dtype = compute_dtype(u.dtype)
    if kernels is None:
        kernels = memory_kernels(Abar, Bbar, n, mode, chunk, dtype, u.device)
    x = u.to(dtype)
    if mode == "sequential":
        m = _sequential(x, kernels.Abar, kernels.Bbar)
    elif mode == "fft":
        m = _fft(x, kernels.H[:n])
    elif mode == "conv":
        m = _conv(x, kernels.H[:n])
    else:
        m = _chunked(x, kernels)
    return m.to(u.dtype)


def lmu_memory_ref(u: torch.Tensor, Abar: torch.Tensor, Bbar: torch.Tensor) -> torch.Tensor:
    """Obviously-correct float64 recurrence loop, for tests. Returns float64."""
    order = _check_pair(Abar, Bbar)
    _check_u(u, order)
    A, B, x = Abar.double(), Bbar.double(), u.double()
    m = torch.zeros(*x.shape[:1], x.shape[2], order, dtype=torch.float64, device=x.device)
    out = []
    for t in range(x.shape[1]):
        m = torch.einsum("ij,bcj->bci", A, m) + x[:, t, :, None] * B
        out.append(m)
    return torch.stack(out, dim=1)


def last_state_kernel(
    Abar: torch.Tensor,
    Bbar: torch.Tensor,
    n: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The reversed impulse response ``R (n, order)``, ``R[j] = H[n-1-j]``, for eq. 25.

    Built in float64, flipped and cast once to the compute dtype of ``dtype``
    (contiguous, on ``device``, default ``Abar``'s): what ``lmu_last_state`` contracts the
    input with. Its last ``m`` rows are the reversed response of length ``m``, so one
    kernel of length ``n`` serves every shorter sequence as a view. Models cache it per
    (length, dtype, device): flipping ``H`` on every call copies ``n·order`` values.
    """
    _check_pair(Abar, Bbar)
    _check_n(n)
    device = torch.device(device) if device is not None else Abar.device
    A64, B64 = Abar.to(device, torch.float64), Bbar.to(device, torch.float64)
    return impulse_response(A64, B64, n).flip(0).to(compute_dtype(dtype)).contiguous()


def lmu_last_state(
    u: torch.Tensor,
    Abar: torch.Tensor,
    Bbar: torch.Tensor,
    *,
    H: torch.Tensor | None = None,
    R: torch.Tensor | None = None,
) -> torch.Tensor:
    """The last memory state ``m_{n-1}`` of shape ``(batch, channels, order)`` (eq. 25).

    A classifier that reads only the last position needs only this state, and the LTI
    memory gives it in one contraction (Chilkuri & Eliasmith 2021, eq. 25)::

        m_{n-1} = sum_k Abar^(n-1-k) Bbar u_k = sum_k H[n-1-k] u_k = sum_k R[k] u_k

    one matmul of the input with the reversed impulse response ``R``: O(n·d) per channel
    instead of the O(n log n · d) trajectory. ``R`` (``last_state_kernel``, at least ``n``
    rows, its last ``n`` used, already in the compute dtype) is the cast-once operand a
    model caches; ``H`` (``impulse_response``, at least ``n`` rows, first ``n`` used) is
    flipped on every call; with neither, ``R`` is built. The contraction is one 2-D
    ``(batch·channels, n) @ (n, order)`` matmul, in the forward and the backward pass (a
    batched ``(b, c, n) @ (n, d)`` runs as a bmm over a broadcast ``R``, 1.7x slower with
    its backward at n = 784, order 256, batch 100 on CPU). Differentiable in ``u``;
    16-bit inputs are computed in float32 as ``lmu_memory`` does; returns ``u``'s dtype.
    """
    order = _check_pair(Abar, Bbar)
    _check_u(u, order)
    b, n, c = u.shape
    dtype = compute_dtype(u.dtype)
    if H is not None and R is not None:
        raise ValueError("give H or R (the reversed impulse response), not both")
    for name, K in (("H", H), ("R", R)):
        if K is not None and (K.dim() != 2 or K.shape[0] < n or K.shape[1] != order):
            raise ValueError(
                f"{name} must have shape (>= {n}, {order}) for n = {n}, got {tuple(K.shape)}"
            )
    if R is not None:
        R = R[R.shape[0] - n:]  # row k meets u_k
    elif H is not None:
        R = H[:n].flip(0)
    else:
        R = last_state_kernel(Abar, Bbar, n, dtype, u.device)
    x = u.to(dtype).transpose(1, 2).reshape(b * c, n)  # a view for one channel
    return (x @ R).view(b, c, order).to(u.dtype)


def lmu_last_state_ref(u: torch.Tensor, Abar: torch.Tensor, Bbar: torch.Tensor) -> torch.Tensor:
    """Obviously-correct float64 recurrence keeping only the state, for tests."""
    order = _check_pair(Abar, Bbar)
    _check_u(u, order)
    A, B, x = Abar.double(), Bbar.double(), u.double()
    m = torch.zeros(x.shape[0], x.shape[2], order, dtype=torch.float64, device=x.device)
    AT = A.T
    for x_t in x.unbind(1):
        m = m @ AT + x_t[..., None] * B  # m_t = Abar m_{t-1} + Bbar u_t, row-vector form
    return m


def _sequential(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    m = x.new_zeros(x.shape[0], x.shape[2], A.shape[0])
    AT = A.T
    out = []
    # unbind, not x[:, t]: each x[:, t] would backpropagate a full-size zero gradient,
    # making the backward pass O(n^2); unbind's backward is one stack
    for x_t in x.unbind(1):
        m = m @ AT + x_t[..., None] * B
        out.append(m)
    return torch.stack(out, dim=1)


def fft_length(n: int) -> int:
    """Smallest 2·3·5-smooth length >= 2n - 1: linear (not circular) convolution.

    FFT libraries (pocketfft, cuFFT) are fast on such sizes; using them instead of the
    next power of two saves up to ~40% of the padding.
    """
    target = max(2 * n - 1, 1)
    best = 1 << (target - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            v = p35
            while v < target:
                v *= 2
            best = min(best, v)
            p35 *= 3
        p5 *= 5
    return best


def _fft(x: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """Causal convolution per channel with every column of ``H`` through one rfft each."""
    b, n, c = x.shape
    L = fft_length(n)
    X = torch.fft.rfft(x.transpose(1, 2), n=L)  # (b, c, F)
    Hf = torch.fft.rfft(H.T, n=L)  # (d, F)
    m = torch.fft.irfft(X[:, :, None, :] * Hf, n=L)[..., :n]  # (b, c, d, n)
    return m.permute(0, 3, 1, 2)


def _causal_conv(x: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """``y[s, :, t] = sum_{k<=t} H[k] x[s, t-k]`` for ``x (S, T)``; returns ``(S, d, T)``."""
    T = x.shape[-1]
    weight = H[:T].flip(0).T.unsqueeze(1)  # (d, 1, T): conv1d is a cross-correlation
    return F.conv1d(F.pad(x.unsqueeze(1), (T - 1, 0)), weight)


def _conv(x: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    b, n, c = x.shape
    m = _causal_conv(x.transpose(1, 2).reshape(b * c, n), H)  # (b·c, d, n)
    return m.reshape(b, c, -1, n).permute(0, 3, 1, 2)


def _chunked(x: torch.Tensor, k: MemoryKernels) -> torch.Tensor:
    """Within-chunk direct convolution + carried state ``s_{j+1} = Abar^c s_j + local_end_j``."""
    b, n, ch = x.shape
    c = min(k.chunk_size, n)
    d = k.Abar.shape[0]
    nc = -(-n // c)
    xs = F.pad(x.transpose(1, 2), (0, nc * c - n)).reshape(b * ch * nc, c)
    local = _causal_conv(xs, k.H[:c]).reshape(b * ch, nc, d, c).transpose(-1, -2)  # (S,nc,c,d)
    if nc > 1:
        ends = local[:, :, -1, :]
        s = ends.new_zeros(b * ch, d)
        starts = [s]
        PcT = k.chunk_power.T
        for j in range(nc - 1):
            s = s @ PcT + ends[:, j]
            starts.append(s)
        starts = torch.stack(starts, dim=1)  # (S, nc, d): state before each chunk
        carry = starts.unsqueeze(-2) @ k.Abar.T  # Abar^1 s, then doubling to c rows
        for P in k.powers:
            if carry.shape[-2] >= c:
                break
            take = min(carry.shape[-2], c - carry.shape[-2])
            carry = torch.cat([carry, carry[..., :take, :] @ P.T], dim=-2)
        local = local + carry
    m = local.reshape(b, ch, nc * c, d)[:, :, :n]
    return m.permute(0, 2, 1, 3)
