"""The parallel LMU (Chilkuri & Eliasmith, ICML 2021): train in parallel, infer as an RNN.

The memory is driven by the input only (no hidden→memory or memory→memory feedback),
so it is an LTI system whose whole trajectory is a causal convolution; the hidden layer
is a per-step nonlinearity of the input and the memory:

    u_t = W_u x_t (+ b_u)                      memory_d channels
    m_t = Abar m_{t-1} + Bbar u_t              per channel, order each (zoh of the LDN)
    h_t = tanh(W_h [m_t, x_t] + b_h)           hidden_size (x_t only if input_to_hidden)
    y_t = W_o h_t + b_o                        output_size (or y_t = h_t without output layer)

Without a hidden cell (``hidden_cell=False``, keras-lmu's ``hidden_cell=None``) the
memory itself is the layer's output: ``y_t = W_o m_t + b_o``.

Names follow keras-lmu's ``LMUFeedforward`` (``memory_d``, ``order``, ``theta``,
``input_to_hidden``, ``use_bias`` for the encoder bias) so its configurations carry over
with the same parameter count. One class, registered as ``lmu-fft``, ``lmu-conv``,
``lmu-chunked`` and ``lmu-seq``; they differ only in how the memory is computed and
share weights (same seed and configuration: same parameters). ``lmu-seq`` runs the
memory as the recurrence: the same model as the parallel ones, trained the slow way,
so the algorithm's speedup can be told apart from the change of model (``lmu``).

``forward_last`` reads the last position only, as a classifier does (the paper's
psMNIST model): the last memory state is one contraction of the encoded input with the
reversed impulse response (eq. 25, ``lmu_last_state``), and the hidden and output
layers run once instead of n times. ``lmu-seq`` keeps the recurrence there too.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from architectures.base import SequenceModel, check_input, check_positive_int
from architectures.cost import Cost
from architectures.lmu import cost as lmu_cost
from architectures.lmu.legendre import legendre_ab, zoh
from architectures.lmu.memory import (
    MODES,
    MemoryKernels,
    compute_dtype,
    last_state_kernel,
    lmu_last_state,
    lmu_memory,
    memory_kernels,
)
from architectures.registry import register

# Kernels cached per model instance; a few shapes at once (e.g. train and eval lengths).
_CACHE_ENTRIES = 4
T = TypeVar("T")


class ParallelLMU(SequenceModel):
    """Parallel LMU; ``mode`` picks how the memory is computed (the registered name's default)."""

    def __init__(
        self,
        input_size: int,
        output_size: int,
        memory_d: int = 1,
        order: int = 256,
        theta: float = 784.0,
        hidden_size: int = 212,
        input_to_hidden: bool = True,
        use_bias: bool = False,
        output_layer: bool = True,
        hidden_cell: bool = True,
        mode: str = "fft",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(input_size, output_size)
        if mode not in MODES:
            raise ValueError(f"unknown memory mode {mode!r}; valid choices: {', '.join(MODES)}")
        if chunk_size is not None and mode != "chunked":
            raise ValueError(f"chunk_size={chunk_size!r} only applies to mode 'chunked'")
        self.memory_d = check_positive_int("memory_d", memory_d)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        A, B = legendre_ab(order, theta)  # validates order and theta
        self.hidden_cell = bool(hidden_cell)
        if not self.hidden_cell and input_to_hidden:
            raise ValueError(
                "input_to_hidden must be False when hidden_cell is False (there is no hidden "
                "layer for the input to reach; keras-lmu raises the same)"
            )
        features = hidden_size if self.hidden_cell else memory_d * order
        if not output_layer and features != output_size:
            what = "hidden_size" if self.hidden_cell else "memory_d * order"
            raise ValueError(
                f"without an output layer the output is {'h' if self.hidden_cell else 'm'}, "
                f"so {what} ({features}) must equal output_size ({output_size})"
            )
        Abar, Bbar = zoh(A, B)
        self.order, self.theta = order, float(theta)
        self.mode, self.chunk_size = mode, chunk_size
        self.input_to_hidden = bool(input_to_hidden)
        # Fixed float64 CPU tensors, not buffers: model.float()/.half() must not degrade
        # them; kernels are built from them in float64 and cast once per dtype/device.
        self._Abar64, self._Bbar64 = Abar, Bbar
        self._kernels: OrderedDict[tuple, MemoryKernels] = OrderedDict()

        self.encoder = nn.Linear(input_size, memory_d, bias=use_bias)
        if self.hidden_cell:
            hidden_in = memory_d * order + (input_size if input_to_hidden else 0)
            self.hidden: nn.Module | None = nn.Linear(hidden_in, hidden_size)
        else:
            self.hidden = None
        self.output = nn.Linear(features, output_size) if output_layer else nn.Identity()

    def extra_repr(self) -> str:
        return f"order={self.order}, theta={self.theta}, mode={self.mode!r}"

    def _cached(self, key: tuple, build: Callable[[], T]) -> T:
        """The one bounded LRU of this instance's cast-once operands, keyed by ``key``."""
        if key in self._kernels:
            self._kernels.move_to_end(key)
            return self._kernels[key]
        value = build()
        self._kernels[key] = value
        while len(self._kernels) > _CACHE_ENTRIES:
            self._kernels.popitem(last=False)
        return value

    def kernels(self, n: int, dtype: torch.dtype, device: torch.device) -> MemoryKernels:
        """Cast-once memory operands for this length/dtype/device, cached in the instance."""
        key = (self.order, self.theta, self.mode, self.chunk_size, n, dtype, device)
        return self._cached(
            key,
            lambda: memory_kernels(
                self._Abar64, self._Bbar64, n, self.mode, self.chunk_size, dtype, device
            ),
        )

    def last_kernel(self, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The reversed impulse response ``R (n, order)`` (``last_state_kernel``) in the
        compute dtype of ``dtype`` for ``lmu_last_state``, cached: built and flipped once
        per length, dtype and device, not on every call. It depends on nothing trainable
        (``Abar``, ``Bbar`` are fixed by ``order`` and ``theta``, both in the key), so an
        optimizer step leaves it valid; a new length, dtype or device builds another."""
        dtype = compute_dtype(dtype)
        key = (self.order, self.theta, "last", None, n, dtype, device)
        return self._cached(
            key, lambda: last_state_kernel(self._Abar64, self._Bbar64, n, dtype, device)
        )

    def _readout(self, m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``m (..., memory_d, order)`` and ``x (..., input_size)`` → ``(..., output_size)``."""
        feats = m.flatten(-2)  # channel-major, as keras-lmu
        if self.hidden is None:
            return self.output(feats)
        if self.input_to_hidden:
            feats = torch.cat([feats, x], dim=-1)
        return self.output(torch.tanh(self.hidden(feats)))

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        u = self.encoder(x)
        k = self.kernels(x.shape[1], u.dtype, u.device)
        m = lmu_memory(u, self._Abar64, self._Bbar64, self.mode, self.chunk_size, kernels=k)
        return self._readout(m, x)

    def last_output(self, x: torch.Tensor) -> torch.Tensor:
        """The last position only: eq. 25 for the memory, the readout once."""
        u = self.encoder(x)
        if self.mode == "sequential":  # the recurrence, keeping only its last state
            k = self._step_kernels(u.dtype, u.device)
            m = u.new_zeros(u.shape[0], self.memory_d, self.order).to(k.Abar.dtype)
            AT = k.Abar.T
            for u_t in u.to(k.Abar.dtype).unbind(1):
                m = m @ AT + u_t[..., None] * k.Bbar
            m = m.to(u.dtype)
        else:
            R = self.last_kernel(x.shape[1], u.dtype, u.device)
            m = lmu_last_state(u, self._Abar64, self._Bbar64, R=R)
        return self._readout(m, x[:, -1])

    def init_state(
        self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """The memory ``(batch, memory_d, order)``, zero: the only state the model carries.

        Kept in float32 for 16-bit models, as in ``forward``: a half-precision recurrence drifts.
        """
        check_positive_int("batch", batch)
        dtype = compute_dtype(dtype or self.encoder.weight.dtype)
        device = device if device is not None else self.encoder.weight.device
        return torch.zeros(batch, self.memory_d, self.order, dtype=dtype, device=device)

    def step(self, x_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of the memory as an RNN: ``m = Abar m + Bbar u`` (same kernels as forward)."""
        check_input(x_t, self.input_size, rank=2)
        u = self.encoder(x_t)
        k = self._step_kernels(u.dtype, u.device)
        m = state.to(k.Abar.dtype) @ k.Abar.T + u.to(k.Abar.dtype)[..., None] * k.Bbar
        return self._readout(m.to(u.dtype), x_t), m

    def _step_kernels(self, dtype: torch.dtype, device: torch.device) -> MemoryKernels:
        key = (self.order, self.theta, "sequential", None, 1, dtype, device)
        return self._cached(
            key,
            lambda: memory_kernels(
                self._Abar64, self._Bbar64, 1, "sequential", None, dtype, device
            ),
        )

    def cost(self, pass_: str, *, batch: int, n: int, itemsize: int) -> Cost:
        """Analytic FLOPs and bytes (``architectures/lmu/cost.py``)."""
        return lmu_cost.parallel(self, pass_, batch, n, itemsize)


_COMMON = dict(
    family="lmu",
    parallel_training=True,
    stepwise=True,
    memory_complexity="O(n)",
    step_memory="O(1)",
)


def _fixed_mode(name: str, mode: str, doc: str) -> type[ParallelLMU]:
    """A subclass whose memory mode is fixed by its registered name.

    Its constructor signature is ParallelLMU's without ``mode`` (the registry reads it
    for the valid configuration keys), and without ``chunk_size`` unless chunked.
    """

    def __init__(self: ParallelLMU, *args: Any, **kwargs: Any) -> None:
        ParallelLMU.__init__(self, *args, mode=mode, **kwargs)

    drop = {"mode"} | ({"chunk_size"} if mode != "chunked" else set())
    sig = inspect.signature(ParallelLMU.__init__)
    __init__.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[p for p in sig.parameters.values() if p.name not in drop]
    )
    return type(name, (ParallelLMU,), {"__init__": __init__, "__doc__": doc})


ParallelLMUSeq = register(
    "lmu-seq",
    description=(
        "Parallel LMU model (Chilkuri & Eliasmith 2021) run as a recurrence: the same "
        "weights as lmu-fft, memory stepped over time (the same-model baseline)"
    ),
    family="lmu",
    parallel_training=False,
    stepwise=True,
    time_complexity="O(n·order²)",
    memory_complexity="O(n)",
    step_memory="O(1)",
)(
    _fixed_mode(
        "ParallelLMUSeq",
        "sequential",
        "Parallel LMU model, memory by the sequential recurrence (no parallelism in n).",
    )
)


ParallelLMUFFT = register(
    "lmu-fft",
    description="Parallel LMU (Chilkuri & Eliasmith 2021), memory by FFT convolution",
    time_complexity="O(n log n)",
    **_COMMON,
)(_fixed_mode("ParallelLMUFFT", "fft", "Parallel LMU, memory by causal FFT convolution."))

ParallelLMUConv = register(
    "lmu-conv",
    description="Parallel LMU (Chilkuri & Eliasmith 2021), memory by direct causal convolution",
    time_complexity="O(n^2)",
    last_output_of="lmu-fft",  # eq. 25: the last state, whatever the memory mode
    **_COMMON,
)(
    _fixed_mode(
        "ParallelLMUConv",
        "conv",
        "Parallel LMU, memory by direct causal convolution (exactly causal).",
    )
)

ParallelLMUChunked = register(
    "lmu-chunked",
    description=(
        "Parallel LMU (Chilkuri & Eliasmith 2021), memory by convolution within chunks "
        "(chunk_size c, default 256) plus the state carried between them"
    ),
    time_complexity="O(n·(c+order))",
    last_output_of="lmu-fft",
    **_COMMON,
)(
    _fixed_mode(
        "ParallelLMUChunked",
        "chunked",
        "Parallel LMU, memory by chunked convolution with carried state.",
    )
)
