"""The fused-kernel branches, driven on CPU through fakes that keep the real packages' rules
(tests/fake_kernels.py cites each one): which path a call takes, that the fused call gets
its layouts right (same numbers as the PyTorch path), and what a cell's log records."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import architectures
from architectures import optional
from architectures.linear_attention import delta_rule, linear_attention
from architectures.mamba import selective_scan
from architectures.optional import FLA_DELTA_RULE, MAMBA_SSM, kernel_log, kernel_status
from tests.fake_kernels import Calls, install, make_fla, make_mamba


@pytest.fixture
def fakes(monkeypatch):
    """Install fakes with ``fakes(modules)``; import results are forgotten afterwards."""
    yield lambda modules, on_cpu=True: install(monkeypatch, modules, on_cpu)
    optional._import.cache_clear()


@pytest.fixture
def tf32():
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    yield
    torch.backends.cuda.matmul.allow_tf32 = before


def rel_err(y, ref) -> float:
    return ((y.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


def scan_args(dtype, b=2, n=37, d=6, s=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, n, d, generator=g, dtype=torch.float64)
    delta = F.softplus(torch.randn(b, n, d, generator=g, dtype=torch.float64))
    A = -torch.rand(d, s, generator=g, dtype=torch.float64) - 0.5
    B, C = (torch.randn(b, n, s, generator=g, dtype=torch.float64) for _ in "BC")
    D = torch.randn(d, generator=g, dtype=torch.float64)
    return [t.to(dtype) for t in (u, delta, A, B, C, D)]


def heads_args(n, dtype, b=2, h=4, dk=8, dv=8, seed=0):
    """q, k positive and unit-norm: valid for linear attention (φ > 0) and the delta rule."""
    g = torch.Generator().manual_seed(seed)
    q, k = (F.normalize(F.elu(torch.randn(b, h, n, dk, generator=g, dtype=torch.float64)) + 1,
                        dim=-1) for _ in "qk")
    v = torch.randn(b, h, n, dv, generator=g, dtype=torch.float64)
    beta = torch.rand(b, h, n, generator=g, dtype=torch.float64)
    return [t.to(dtype) for t in (q, k, v, beta)]


# -- mamba-ssm ----------------------------------------------------------------------------------


def test_mamba_without_its_cuda_extension_is_not_usable(fakes):
    """mamba-ssm imports with selective_scan_cuda = None; calling it would fail. Before the
    fix the import probe called it usable and the cell died in AttributeError."""
    calls = Calls()
    fakes(make_mamba("2.2.4", built=False, calls=calls))
    assert "selective_scan_cuda is None" in MAMBA_SSM.reason()
    args = scan_args(torch.float32)
    with kernel_log() as log:
        y = selective_scan(*args)
    torch.testing.assert_close(y, selective_scan(*args, use_kernel=False))
    assert log.path == "pytorch" and calls.counts == {}
    assert "selective_scan_cuda is None" in kernel_status()["mamba-ssm"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mamba_fused_call_keeps_layout_and_dtype_rules(fakes, dtype):
    calls = Calls()
    fakes(make_mamba("2.2.4", built=True, calls=calls))
    args = scan_args(dtype)
    with kernel_log() as log:
        y = selective_scan(*args)
    assert calls.counts == {"selective_scan_cuda.fwd": 1}
    assert log.path == "mamba-ssm 2.2.4"
    assert y.dtype == dtype
    ref = selective_scan(*(t.double() for t in args), use_kernel=False)
    assert rel_err(y, ref) < (1e-5 if dtype == torch.float32 else 2e-2)


def test_mamba_model_records_fused_path_and_matches_pytorch(fakes):
    calls = Calls()
    fakes(make_mamba("2.2.4", built=True, calls=calls))
    torch.manual_seed(0)
    model = architectures.build("mamba", preset="tiny")
    x = torch.randn(2, 19, 1)
    with torch.no_grad(), kernel_log() as log:
        fast = model(x)
    assert log.path == "mamba-ssm 2.2.4" and calls.counts["selective_scan_cuda.fwd"] >= 1
    for layer in model.layers:
        layer.mixer.use_kernel = False
    with torch.no_grad():
        slow = model(x)
    assert rel_err(fast, slow) < 1e-5


def test_mamba_float64_takes_pytorch_path(fakes):
    fakes(make_mamba("2.2.4", built=True, calls=Calls()))
    with kernel_log() as log:
        selective_scan(*scan_args(torch.float64))
    assert log.path == "pytorch" and "float64" in log.refused["mamba-ssm"]


# -- flash-linear-attention ---------------------------------------------------------------------


def with_fla(fakes, kernel, *args):
    """``kernel(*args)`` with flash-linear-attention 0.6.0 faked: the fake's calls, the
    kernel log and the output."""
    calls = Calls()
    fakes(make_fla("0.6.0", calls))
    with kernel_log() as log:
        out = kernel(*args)
    return calls, log, out


def test_delta_rule_float32_takes_pytorch_path(fakes, tf32):
    """chunk_delta_rule asserts non-float32; the old dtype list allowed float32 and the
    DeltaNet cell failed on its first call. Even under TF32 it stays on PyTorch."""
    q, k, v, beta = heads_args(40, torch.float32)
    calls, log, out = with_fla(fakes, delta_rule, q, k, v, beta)
    assert calls.counts == {} and log.path == "pytorch"
    assert "float32 is not supported" in log.refused["fla-delta-rule"]
    torch.testing.assert_close(out, delta_rule(q, k, v, beta, use_kernel=False))


def test_delta_rule_bfloat16_runs_fused_with_right_layout(fakes):
    args = heads_args(40, torch.bfloat16)
    calls, log, out = with_fla(fakes, delta_rule, *args)
    assert calls.counts == {"chunk_delta_rule": 1}
    assert log.path == "flash-linear-attention 0.6.0"
    ref = delta_rule(*(t.double() for t in args), use_kernel=False)
    assert rel_err(out, ref) < 2e-2


def test_linear_attention_float32_strict_takes_pytorch_path(fakes):
    """fla's Triton kernels compute float32 in TF32: under the strict default they are not
    used, and the log says why."""
    assert optional.float32_policy() == "strict"
    q, k, v, _ = heads_args(40, torch.float32)
    calls, log, out = with_fla(fakes, linear_attention, q, k, v)
    assert calls.counts == {} and log.path == "pytorch"
    assert "strict" in log.note()
    torch.testing.assert_close(out, linear_attention(q, k, v, use_kernel=False))


def test_linear_attention_float32_under_tf32_runs_fused(fakes, tf32):
    assert optional.float32_policy() == "tf32"
    q, k, v, _ = heads_args(40, torch.float32)
    calls, log, out = with_fla(fakes, linear_attention, q, k, v)
    assert calls.counts == {"chunk_linear_attn": 1} and log.path == "flash-linear-attention 0.6.0"
    assert rel_err(out, linear_attention(q, k, v, use_kernel=False)) < 1e-5


@pytest.mark.parametrize("n", [1, 3])
def test_short_sequences_avoid_old_fla_rejection(fakes, tf32, n):
    """fla 0.4.2's chunk_linear_attn raises for seq_len < num_heads; such calls must take
    the PyTorch path (before the fix the fake raised DeprecationWarning here)."""
    calls = Calls()
    fakes(make_fla("0.4.2", calls))
    q, k, v, _ = heads_args(n, torch.float32, h=4)
    with kernel_log() as log:
        out = linear_attention(q, k, v)
    assert calls.counts == {} and "seq_len" in log.refused["fla-linear-attn"]
    torch.testing.assert_close(out, linear_attention(q, k, v, use_kernel=False))
    q, k, v, _ = heads_args(5, torch.float32, h=4)  # T >= H: fused again
    linear_attention(q, k, v)
    assert calls.counts == {"chunk_linear_attn": 1}


def test_fla_models_under_compile_decide_once_and_log(fakes):
    """The decision is a traced constant: a compiled DeltaNet in bfloat16 runs the fused
    kernel, its log (taken on the compiling call) says so, and numbers match eager."""
    calls = Calls()
    fakes(make_fla("0.6.0", calls))
    torch.manual_seed(0)
    model = architectures.build("deltanet", preset="tiny").to(torch.bfloat16)
    x = torch.randn(2, 12, 1, dtype=torch.bfloat16)
    with torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model, backend="eager")
        with kernel_log() as log:
            y = compiled(x)
    assert log.path == "flash-linear-attention 0.6.0"
    torch.testing.assert_close(y, eager)


def test_absent_packages_are_reported_not_raised():
    missing = optional.OptionalKernel("no-such-package", "no_such_module_seqbench")
    assert missing.load() is None
    assert "ModuleNotFoundError" in missing.reason()
    assert missing.refusal("cuda", torch.float32) == missing.reason()
    assert missing.refusal("cpu", torch.float32) == "not on cuda"
    assert set(kernel_status()) == {"mamba-ssm", "fla-linear-attn", "fla-delta-rule"}
    assert FLA_DELTA_RULE.refusal("cpu", torch.bfloat16) == "not on cuda"


def test_kernel_checks_run_each_installed_kernel_against_its_reference(fakes):
    from architectures.kernel_checks import check_kernels

    calls = Calls()
    fakes({**make_mamba("2.2.4", built=True, calls=calls), **make_fla("0.6.0", calls)})
    rows = {r.kernel: r for r in check_kernels("cpu")}
    assert set(calls.counts) == {"selective_scan_cuda.fwd", "chunk_linear_attn",
                                 "chunk_delta_rule"}
    for r in rows.values():
        assert r.rel_err is not None and r.passed, r
    assert rows["mamba-ssm"].label == "mamba-ssm 2.2.4" and rows["mamba-ssm"].dtype == "float32"
    assert rows["fla-delta-rule"].dtype == "bfloat16"


def test_kernel_checks_skip_what_cannot_run():
    from architectures.kernel_checks import check_kernels

    rows = check_kernels("cpu")
    assert [r.skipped for r in rows] == ["not on cuda"] * 3
    assert all(r.passed for r in rows)


@pytest.mark.slow
def test_compile_marks_are_torchs_without_importing_dynamo():
    """``constant_when_compiled`` marks a function as torch's decorator does, and importing
    the adapters leaves ``torch._dynamo`` (1.4 s) unimported until a kernel path needs it."""
    import subprocess
    import sys

    from architectures.optional import constant_when_compiled

    def ours():
        pass

    def theirs():
        pass

    constant_when_compiled(ours)
    torch.compiler.assume_constant_result(theirs)
    assert vars(ours) == vars(theirs) != {}
    code = "import sys, architectures, workloads; print('torch._dynamo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
