"""Stage 2, **contract**: the adapter contract, checked on one device for every registered
adapter.

The same promises tests/architectures/test_contract.py holds adapters to on the CPU, asked of an
installation on the device it will measure on (cuDNN, cuFFT and fused kernels differ
from the CPU's): output shape and finiteness, causality, forward_last == the full path's
last position, step() == forward, and float32 tracking float64 with the same weights.
Tiny preset, at a non-reference input/output size so feature-size mix-ups show.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

import architectures
from harness.selftest.verdict import Check, Outcome

IN, OUT, BATCH, N = 3, 5, 2, 24
CAUSAL_T = 9  # perturbed step
# float64 roundoff (an FFT convolution leaks ~1e-16 into the past); float32 vs float64
LEAK_ATOL, STEP_RTOL, STEP_ATOL = 1e-10, 1e-9, 1e-10
F32_RTOL, F32_ATOL = 1e-3, 1e-4


@dataclass
class ContractResult:
    arch: str
    failures: list[str] = field(default_factory=list)
    causal_leak: float | None = None  # largest change before the perturbed step
    step_err: float | None = None  # largest |step - forward|
    last_err: float | None = None  # largest |forward_last - forward[:, -1]|
    f32_err: float | None = None  # largest |float32 - float64| / (atol + rtol |float64|)

    @property
    def passed(self) -> bool:
        return not self.failures


def _make(name: str, dtype: torch.dtype, device: torch.device):
    torch.manual_seed(0)
    model = architectures.build(name, preset="tiny", input_size=IN, output_size=OUT)
    return model.to(device=device, dtype=dtype).eval()


def _inputs(dtype: torch.dtype, device: torch.device, n: int = N) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, n, IN, generator=g, dtype=torch.float64).to(device, dtype)


def check_adapter(name: str, device: str | torch.device) -> ContractResult:
    """Run every contract check of adapter ``name`` on ``device``; never raises."""
    device = torch.device(device)
    res = ContractResult(name)
    try:
        _check(name, device, res)
    except Exception as exc:  # noqa: BLE001 - a crash is a failed contract, reported
        res.failures.append(f"raised {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    return res


def _check(name: str, device: torch.device, res: ContractResult) -> None:
    f64 = torch.float64
    model = _make(name, f64, device)
    x = _inputs(f64, device)
    with torch.no_grad():
        for n in (1, 17):
            y = model(_inputs(f64, device, n))
            if tuple(y.shape) != (BATCH, n, OUT) or y.device.type != device.type:
                res.failures.append(f"shape {tuple(y.shape)} on {y.device}, expected "
                                    f"{(BATCH, n, OUT)} on {device}")
            if not torch.isfinite(y).all():
                res.failures.append(f"non-finite output at n={n}")
        y = model(x)
        x2 = x.clone()
        x2[:, CAUSAL_T] += 1.0
        y2 = model(x2)
        res.causal_leak = (y2[:, :CAUSAL_T] - y[:, :CAUSAL_T]).abs().max().item()
        if res.causal_leak > LEAK_ATOL:
            res.failures.append(f"not causal: outputs before t={CAUSAL_T} moved by "
                                f"{res.causal_leak:.2e}")
        if (y2[:, CAUSAL_T:] - y[:, CAUSAL_T:]).abs().max().item() <= 1e-6:
            res.failures.append(f"perturbing x_{CAUSAL_T} changed nothing after it")
        last = model.forward_last(x)
        err = (last - y[:, -1]).abs()
        res.last_err = err.max().item()
        bound = STEP_ATOL + STEP_RTOL * y[:, -1].abs()
        if tuple(last.shape) != (BATCH, OUT) or (err > bound).any():
            res.failures.append(f"forward_last differs from forward[:, -1] by "
                                f"{res.last_err:.2e}")
        if model.info.stepwise:
            state = model.init_state(BATCH, device=device, dtype=f64)
            ys = []
            for t in range(N):
                y_t, state = model.step(x[:, t], state)
                ys.append(y_t)
            err = (torch.stack(ys, 1) - y).abs()
            res.step_err = err.max().item()
            if (err > STEP_ATOL + STEP_RTOL * y.abs()).any():
                res.failures.append(f"step() differs from forward by {res.step_err:.2e}")
        y32 = _make(name, torch.float32, device)(_inputs(torch.float32, device))
        scaled = (y32.double() - y).abs() / (F32_ATOL + F32_RTOL * y.abs())
        res.f32_err = (y32.double() - y).abs().max().item()
        if (scaled > 1).any():
            res.failures.append(f"float32 differs from float64 by {res.f32_err:.2e} "
                                f"(bound {F32_ATOL:g} + {F32_RTOL:g}·|y|)")


def check_contract(device: str, archs: tuple[str, ...] | None) -> Check:
    """Every adapter of ``archs`` (None: all registered) on ``device``: one table row each."""
    names = list(archs or architectures.available())
    results = [check_adapter(n, device) for n in names]
    failed = [r for r in results if not r.passed]
    lines = ["| adapter | causal leak | forward_last − last | step − forward | "
             "float32 − float64 | result |", "|---|---|---|---|---|---|"]

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.1e}"

    for r in results:
        lines.append(f"| {r.arch} | {fmt(r.causal_leak)} | {fmt(r.last_err)} | "
                     f"{fmt(r.step_err)} | "
                     f"{fmt(r.f32_err)} | {'ok' if r.passed else '; '.join(r.failures)} |")
    brief = (f"{len(results) - len(failed)} of {len(results)} adapters keep the contract"
             + (f"; failed: {', '.join(f'{r.arch} ({r.failures[0]})' for r in failed)}"
                if failed else ""))
    return Check("contract", Outcome.FAIL if failed else Outcome.PASS, brief, brief=brief,
                 lines=lines, data={"results": [asdict(r) for r in results]})
