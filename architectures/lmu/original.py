"""The original LMU cell (Voelker, Kajić & Eliasmith 2019) run as a loop over time.

This is the honest sequential baseline the parallel LMU is measured against, in
keras-lmu's vocabulary (``memory_d``, ``order``, ``theta``, ``hidden_size`` and the
``hidden_to_memory`` / ``memory_to_memory`` / ``input_to_hidden`` switches). Per step t::

    u_t = W_x x_t  (+ e_h h_{t-1})  (+ e_m m_{t-1})          memory_d channels
    m_t = Abar m_{t-1} + Bbar u_t                            each channel: order dims
    h_t = tanh(W_m m_t  (+ W_x' x_t)  + W_h h_{t-1} + b)     keras SimpleRNNCell
    y_t = W_y h_t + b_y

``recurrent_bias=False`` drops ``b`` (the paper's psMNIST model has none: 102,027
parameters); ``init="voelker2019"`` is that model's published initialisation (encoders
e_x = 1, e_h = e_m = 0; kernels W_x = W_h = 0, W_m Xavier normal), as in the authors'
``LMUCell(input_encoders_initializer=Constant(1), ...)``.

The loop is made as fast as an honest loop can be: every input-only term
(``W_x x_t``, ``W_x' x_t + b``) is computed for all t in one matmul before the loop;
each state vector is multiplied once per step against a concatenated weight
(``h_{t-1} @ [e_h | W_h]`` and ``m_t @ [W_m | e_m]``, the latter feeding both ``h_t``
and ``u_{t+1}``); the step is one function shared by ``step()`` and the loop (so both
give identical numbers), optionally ``torch.compile``-d. ``step()`` reuses the fused
weights while autograd is off and the parameters are unchanged (rebuilding them cost
more than the step itself at batch 1); under autograd they are rebuilt on every call,
so gradients flow to the parameters.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from architectures.base import SequenceModel, check_input, check_positive_int
from architectures.cost import Cost
from architectures.lmu import cost as lmu_cost
from architectures.lmu.legendre import legendre_ab, zoh
from architectures.registry import register

INITS = ("default", "voelker2019")

# state = (h, m, c): h (B, H); m (B, D*order); c = m @ e_m (B, D), carried so that the
# memory->memory feedback reuses the fused matmul of the previous step.
State = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
_Fused = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # w_in, w_h, w_m, b_in


def _lmu_step(
    p_t: torch.Tensor,
    h: torch.Tensor,
    m: torch.Tensor,
    c: torch.Tensor,
    w_h: torch.Tensor,
    w_m: torch.Tensor,
    abar_t: torch.Tensor,
    bbar: torch.Tensor,
    memory_d: int,
) -> State:
    """One LMU step from the precomputed input terms ``p_t = [W_x x_t | W_x' x_t + b]``.

    ``w_h = [e_h | W_h]`` (H, D+H); ``w_m = [W_m | e_m]`` (D*order, H+D); disabled
    feedback paths are zero blocks, which add exact zeros.
    """
    batch, order = h.shape[0], abar_t.shape[0]
    g = torch.addmm(p_t, h, w_h)  # (B, D+H): [u-part, hidden-part]
    u = g[:, :memory_d] + c  # (B, D)
    m = torch.addmm(u.reshape(-1, 1) * bbar, m.reshape(-1, order), abar_t)  # (B*D, order)
    m = m.reshape(batch, -1)
    k = m @ w_m  # (B, H+D): [W_m m_t | e_m m_t]
    hidden = g.shape[1] - memory_d
    h = torch.tanh(g[:, memory_d:] + k[:, :hidden])
    return h, m, k[:, hidden:]


@register(
    "lmu",
    family="lmu",
    description="original LMU cell (Voelker 2019): feedback memory, looped over time",
    parallel_training=False,
    stepwise=True,
    time_complexity="O(n)",
    memory_complexity="O(n)",
    step_memory="O(1)",
)
class LMU(SequenceModel):
    """Original LMU (keras-lmu ``LMU`` layer with a SimpleRNN hidden cell) + linear head.

    ``compile=True`` runs the step through ``torch.compile``; if compilation is not
    available or fails, it warns once and runs eagerly.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        memory_d: int = 1,
        order: int = 256,
        theta: float = 784.0,
        hidden_size: int = 212,
        hidden_to_memory: bool = True,
        memory_to_memory: bool = True,
        input_to_hidden: bool = True,
        recurrent_bias: bool = True,
        init: str = "default",
        compile: bool = False,
    ) -> None:
        super().__init__(input_size, output_size)
        self.memory_d = check_positive_int("memory_d", memory_d)
        self.order = check_positive_int("order", order)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        A, B = legendre_ab(order, theta)  # validates order, theta
        self.theta = float(theta)
        self.hidden_to_memory = bool(hidden_to_memory)
        self.memory_to_memory = bool(memory_to_memory)
        self.input_to_hidden = bool(input_to_hidden)
        Abar, Bbar = zoh(A, B)
        # Built in float64 and kept as float64 masters; the buffers are cast from the
        # masters on every .to()/.double()/.cuda() (see _apply), never float32 -> float64.
        self._abar_t64, self._bbar64 = Abar.T.contiguous(), Bbar
        dtype = torch.get_default_dtype()
        self.register_buffer("abar_t", self._abar_t64.to(dtype), persistent=False)
        self.register_buffer("bbar", self._bbar64.to(dtype), persistent=False)

        D, H, M = memory_d, hidden_size, memory_d * order
        self.input_encoder = nn.Linear(input_size, D, bias=False)  # W_x
        self.hidden_encoder = nn.Linear(H, D, bias=False) if hidden_to_memory else None  # e_h
        self.memory_encoder = nn.Linear(M, D, bias=False) if memory_to_memory else None  # e_m
        self.memory_kernel = nn.Linear(M, H, bias=False)  # W_m
        self.input_kernel = nn.Linear(input_size, H, bias=False) if input_to_hidden else None
        self.recurrent_kernel = nn.Linear(H, H, bias=bool(recurrent_bias))  # W_h, b
        self.head = nn.Linear(H, output_size)
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; valid choices: {', '.join(INITS)}")
        self.init = init
        if init == "voelker2019":
            self._init_voelker2019()
        self._compile = bool(compile)
        self._compiled: Callable[..., State] | None = None
        # step()'s fused weights outside autograd, with what they were built from
        self._fused_cache: tuple[tuple[nn.Parameter, ...], tuple[Any, ...], _Fused] | None
        self._fused_cache = None

    @torch.no_grad()
    def _init_voelker2019(self) -> None:
        """e_x = 1, e_h = e_m = 0, W_x = W_h = 0, W_m Xavier normal (the psMNIST model)."""
        self.input_encoder.weight.fill_(1.0)
        for layer in (self.hidden_encoder, self.memory_encoder, self.input_kernel):
            if layer is not None:
                layer.weight.zero_()
        self.recurrent_kernel.weight.zero_()
        if self.recurrent_kernel.bias is not None:
            self.recurrent_kernel.bias.zero_()
        nn.init.xavier_normal_(self.memory_kernel.weight)

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> LMU:  # type: ignore[override]
        super()._apply(fn, recurse)
        device, dtype = self.abar_t.device, self.abar_t.dtype
        self._abar_t64 = self._abar_t64.to(device)
        self._bbar64 = self._bbar64.to(device)
        self.abar_t = self._abar_t64.to(dtype)
        self.bbar = self._bbar64.to(dtype)
        self._fused_cache = None  # (it would miss anyway: it checks devices, dtypes)
        return self

    def __getstate__(self) -> dict[str, Any]:
        # deepcopy / pickle: the copy rebuilds its own fused weights on its first step
        state = super().__getstate__()
        state["_fused_cache"] = None
        return state

    # -- fused weights: rebuilt per call under autograd, reused by step() outside it ------
    def _fused(self) -> _Fused:
        """``(w_in, w_h, w_m, b_in)``: input weight for [u | hidden], and the state weights."""
        D, H = self.memory_d, self.hidden_size
        ref = self.recurrent_kernel.weight
        e_h = (
            self.hidden_encoder.weight.T if self.hidden_encoder is not None else ref.new_zeros(H, D)
        )
        e_m = (
            self.memory_encoder.weight.T
            if self.memory_encoder is not None
            else ref.new_zeros(D * self.order, D)
        )
        w_h = torch.cat([e_h, self.recurrent_kernel.weight.T], 1)
        w_m = torch.cat([self.memory_kernel.weight.T, e_m], 1)
        x_h = (
            self.input_kernel.weight
            if self.input_kernel is not None
            else ref.new_zeros(H, self.input_size)
        )
        w_in = torch.cat([self.input_encoder.weight, x_h], 0)  # (D+H, in)
        bias = self.recurrent_kernel.bias
        b_in = torch.cat([ref.new_zeros(D), bias if bias is not None else ref.new_zeros(H)])
        return w_in, w_h, w_m, b_in

    def _fused_params(self) -> tuple[nn.Parameter, ...]:
        """The parameters ``_fused()`` reads (the head's are not among them)."""
        layers = (self.input_encoder, self.hidden_encoder, self.memory_encoder,
                  self.memory_kernel, self.input_kernel, self.recurrent_kernel)  # fmt: skip
        params = tuple(layer.weight for layer in layers if layer is not None)
        bias = self.recurrent_kernel.bias
        return params if bias is None else (*params, bias)

    def _step_weights(self) -> _Fused:
        """``_fused()`` for ``step()``: built once and reused while autograd is off.

        Under autograd (grad mode on and a parameter requiring grad) it is ``_fused()``,
        run on every call so that every step's graph reaches the parameters. Otherwise
        the weights are reused while nothing they were built from has changed: the same
        parameter objects with the same ``_version`` counters (every in-place write bumps
        them: an optimizer step, ``load_state_dict``, ``p.add_()`` under ``no_grad``),
        data pointers, devices and dtypes, and the same inference mode. A write through
        ``p.data`` bypasses the version counter and is not seen: write to ``p`` itself.
        """
        params = self._fused_params()
        if torch.is_grad_enabled() and any(q.requires_grad for q in params):
            return self._fused()
        meta = (
            torch.is_inference_mode_enabled(),
            *((q._version, q.data_ptr(), q.device, q.dtype) for q in params),
        )
        cache = self._fused_cache
        if (
            cache is not None
            and cache[1] == meta
            and all(a is b for a, b in zip(cache[0], params, strict=True))
        ):
            return cache[2]
        weights = self._fused()
        self._fused_cache = (params, meta, weights)
        return weights

    def _step_impl(self) -> Callable[..., State]:
        if not self._compile:
            return _lmu_step
        if self._compiled is None:
            try:
                self._compiled = torch.compile(_lmu_step, dynamic=False)
            except Exception as exc:  # noqa: BLE001 - any failure means: run eagerly
                warnings.warn(f"torch.compile unavailable ({exc}); running eagerly", stacklevel=3)
                self._compile = False
                return _lmu_step
        return self._compiled

    def _run(self, fn: Callable[..., State], *args: Any) -> State:
        try:
            return fn(*args)
        except Exception as exc:  # compile errors surface on first call
            if fn is _lmu_step:
                raise
            warnings.warn(f"torch.compile failed ({exc!r:.200}); running eagerly", stacklevel=3)
            self._compile, self._compiled = False, None
            return _lmu_step(*args)

    # -- public API ---------------------------------------------------------------------
    def init_state(
        self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> State:
        device = self.abar_t.device if device is None else device
        dtype = self.abar_t.dtype if dtype is None else dtype
        z = torch.zeros
        return (
            z(batch, self.hidden_size, device=device, dtype=dtype),
            z(batch, self.memory_d * self.order, device=device, dtype=dtype),
            # c is a column slice of the (B, H+D) product, as after every step, so a
            # compiled step sees the same strides from t = 0 on (no recompilation)
            z(batch, self.hidden_size + self.memory_d, device=device, dtype=dtype)[
                :, self.hidden_size :
            ],
        )

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        check_input(x_t, self.input_size, rank=2)
        w_in, w_h, w_m, b_in = self._step_weights()
        p_t = torch.addmm(b_in, x_t, w_in.T)
        fn = self._step_impl()
        h, m, c = self._run(fn, p_t, *state, w_h, w_m, self.abar_t, self.bbar, self.memory_d)
        return self.head(h), (h, m, c)

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._loop(x, keep=True)).transpose(0, 1)

    def last_output(self, x: torch.Tensor) -> torch.Tensor:
        """The same loop, keeping only the last hidden state; the head runs once."""
        return self.head(self._loop(x, keep=False))

    def _loop(self, x: torch.Tensor, keep: bool) -> torch.Tensor:
        """Hidden states ``(n, batch, H)`` (``keep``) or the last one ``(batch, H)``."""
        batch, n, _ = x.shape
        w_in, w_h, w_m, b_in = self._fused()
        # all input-only terms for every t at once, time-major so p[t] is contiguous
        p = torch.addmm(b_in, x.transpose(0, 1).reshape(n * batch, -1), w_in.T)
        p = p.reshape(n, batch, -1)
        h, m, c = self.init_state(batch, x.device, x.dtype)
        fn = self._step_impl()
        args = (w_h, w_m, self.abar_t, self.bbar, self.memory_d)
        if not keep:
            for p_t in p.unbind(0):  # unbind: see below
                h, m, c = self._run(fn, p_t, h, m, c, *args)
            return h
        if torch.is_grad_enabled() and (
            x.requires_grad or any(q.requires_grad for q in self.parameters())
        ):
            # autograd: iterate over unbind (p[t] would backpropagate a full-size zero
            # gradient per step) and collect in a list + one stack (in-place writes into
            # a preallocated output would too): the backward pass stays O(n)
            hs = []
            for p_t in p.unbind(0):
                h, m, c = self._run(fn, p_t, h, m, c, *args)
                hs.append(h)
            return torch.stack(hs)
        out = x.new_empty(n, batch, self.hidden_size)  # inference: preallocated
        for t in range(n):
            h, m, c = self._run(fn, p[t], h, m, c, *args)
            out[t] = h
        return out

    def cost(self, pass_: str, *, batch: int, n: int, itemsize: int) -> Cost:
        """Analytic FLOPs and bytes (``architectures/lmu/cost.py``)."""
        return lmu_cost.original(self, pass_, batch, n, itemsize)
