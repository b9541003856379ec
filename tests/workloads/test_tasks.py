"""Task workloads: data, the IDX reader, Mackey-Glass, training, records, bad input."""

from __future__ import annotations

import gzip
import json
import math
import struct
import subprocess
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import architectures
import workloads
from harness.run.settings import RunSettings
from harness.run.suites import load_suite
from harness.run.worker import run_cell
from harness.store.records import Cell
from tests.helpers import harness
from workloads.task_workload import TaskWorkload
from workloads.tasks import TASKS
from workloads.tasks.mackey_glass import MackeyGlass, mackey_glass
from workloads.tasks.psdigits import PsDigits, permutation, pixel_sequences, split_digits
from workloads.tasks.psmnist import FILES, PsMnist, find_files, read_idx
from workloads.tasks.synthetic import Adding, Copy, adding_batch, copy_batch
from workloads.tasks.textlm import TextLM, read_corpus, stdlib_corpus
from workloads.tasks.train_loop import TaskResult, train

TASK_NAMES = [cls.name for cls in TASKS]


# --- registry and options -------------------------------------------------------------

def test_tasks_are_workloads():
    for name in TASK_NAMES:
        assert name in workloads.available()
        assert workloads.kind(name) == "task"
    assert workloads.kind("forward") == "timed"
    assert workloads.option_keys("forward") == ()
    assert "lr" in workloads.option_keys("psdigits")


def test_option_keys_never_collide_with_adapter_keys():
    """Task options and adapter configuration share a cell's overrides: no key is both."""
    task_keys = {k for name in TASK_NAMES for k in workloads.option_keys(name)}
    for arch in architectures.available():
        assert not task_keys & set(architectures.spec(arch).config_keys), arch


def test_options_are_checked():
    with pytest.raises(ValueError, match="unknown option 'lrate'.*valid choices: lr"):
        PsDigits().options({"lrate": 1e-3})
    with pytest.raises(ValueError, match="'max_steps'.*must be int"):
        PsDigits().options({"max_steps": 2.5})
    with pytest.raises(ValueError, match="max_wall_s must be > 0"):
        PsDigits().options({"max_wall_s": 0})
    opts = PsDigits().options({"lr": 1, "max_steps": 3})
    assert opts.lr == 1.0 and isinstance(opts.lr, float) and opts.max_steps == 3


# --- psdigits ---------------------------------------------------------------------------

def test_psdigits_shapes_split_and_permutation():
    task = PsDigits()
    data = task.load(784, task.options({}))
    assert data.test_x.shape == (360, 784, 1)
    assert data.info["n_train"] + data.info["n_test"] == 1797
    assert set(data.test_y.tolist()) == set(range(10))
    x, y = data.sample(5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 784, 1) and y.shape == (5,)
    again = task.load(784, task.options({}))
    assert torch.equal(again.test_x, data.test_x)  # same split, order and permutation


def test_permutation_is_fixed_and_applied_as_indexing():
    p = permutation(784)
    assert torch.equal(p, permutation(784))
    assert sorted(p.tolist()) == list(range(784)) and not torch.equal(p, torch.arange(784))
    assert torch.equal(permutation(64, permute=False), torch.arange(64))
    images = torch.rand(3, 8, 8)
    seq = pixel_sequences(images, 8)  # no resize at the native size
    flat = images.reshape(3, 64)
    p = permutation(64)
    for i in range(64):  # step i shows pixel p[i] of the row-major image
        assert torch.equal(seq[:, i, 0], flat[:, p[i]])


def test_upsampling_keeps_constant_images_and_range():
    const = torch.full((2, 8, 8), 0.25)
    assert torch.allclose(pixel_sequences(const, 28), torch.full((2, 784, 1), 0.25))
    train_img, train_lab, test_img, test_lab = split_digits()
    seq = pixel_sequences(train_img[:4], 28)
    assert seq.min() >= 0 and seq.max() <= 1
    assert seq.mean().item() == pytest.approx(train_img[:4].mean().item(), abs=0.02)


def test_psdigits_rejects_non_square_lengths():
    with pytest.raises(ValueError, match="seq_len must be side\\*\\*2.*got 99"):
        PsDigits().check(99, 8, PsDigits().options({}))
    PsDigits().check(64, 8, PsDigits().options({}))


# --- IDX / psmnist ----------------------------------------------------------------------

def write_idx(path: Path, array: np.ndarray, code: int, gz: bool = False) -> None:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    big = array.astype(array.dtype.newbyteorder(">"))
    payload = header + big.tobytes()
    if gz:
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def test_read_idx_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (5, 3, 4)).astype(np.uint8)
    write_idx(tmp_path / "a", img, 0x08)
    assert np.array_equal(read_idx(tmp_path / "a"), img)
    write_idx(tmp_path / "a.gz", img, 0x08, gz=True)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), img)
    ints = rng.integers(-1000, 1000, (7,)).astype(np.int32)
    write_idx(tmp_path / "i", ints, 0x0C)
    assert np.array_equal(read_idx(tmp_path / "i"), ints)
    floats = rng.standard_normal((2, 3))
    write_idx(tmp_path / "f", floats, 0x0E)
    assert np.array_equal(read_idx(tmp_path / "f"), floats)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + struct.pack(">I", 3) + b"abc")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"abc")
    with pytest.raises(ValueError, match="has 3 bytes, shape \\(5,\\) needs 5"):
        read_idx(tmp_path / "short")
    (tmp_path / "code").write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"a")
    with pytest.raises(ValueError, match="unknown IDX type code 0x07"):
        read_idx(tmp_path / "code")


def write_mnist(folder: Path, n_train: int = 12, n_test: int = 6, side: int = 4) -> dict:
    rng = np.random.default_rng(1)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, side, side)).astype(np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, side, side)).astype(np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for key, name in FILES.items():
        write_idx(folder / f"{name}.gz", arrays[key], 0x08, gz=True)
    return arrays


def test_psmnist_loads_idx_files(tmp_path):
    arrays = write_mnist(tmp_path)
    task = PsMnist()
    opts = task.options({"data": str(tmp_path)})
    task.check(16, 4, opts)
    data = task.load(16, opts)
    assert data.test_x.shape == (6, 16, 1)
    assert data.test_y.tolist() == arrays["test_labels"].tolist()
    # standardised permuted pixels of the first test image, computed by hand
    train = arrays["train_images"].astype(np.float64) / 255
    mean, std = train.mean(), train.std(ddof=1)
    first = (arrays["test_images"][0].reshape(16) / 255 - mean) / std
    expected = torch.tensor(first)[permutation(16)]
    assert torch.allclose(data.test_x[0, :, 0].double(), expected, atol=1e-5)


def test_psmnist_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="needs the MNIST IDX files.*data"):
        find_files("")
    with pytest.raises(ValueError, match="does not exist"):
        find_files(str(tmp_path / "nope"))
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ValueError, match="lacks t10k-labels-idx1-ubyte"):
        find_files(str(tmp_path))


# --- Mackey-Glass -----------------------------------------------------------------------

def test_mackey_glass_is_deterministic_per_seed():
    a = mackey_glass(300, seed=3)
    assert np.array_equal(a, mackey_glass(300, seed=3))
    assert not np.allclose(a, mackey_glass(300, seed=4))
    assert a.shape == (300,) and 0.2 < a.min() and a.max() < 1.5  # the attractor's range


def test_mackey_glass_satisfies_the_delay_equation_at_tau_17():
    """On the fine grid, dx/dt matches the right-hand side with the 17-unit delay and
    not with a neighbouring delay: the series has the delay it claims."""
    dt = 0.1
    x = mackey_glass(4000, dt=dt, sample_dt=dt, washout=0)
    deriv = (x[2:] - x[:-2]) / (2 * dt)  # at t = 1 .. len-2

    def residual(lag_units: float) -> float:
        lag = round(lag_units / dt)
        t = np.arange(lag + 1, len(x) - 1)
        xd = x[t - lag]
        rhs = 0.2 * xd / (1 + xd**10) - 0.1 * x[t]
        return float(np.abs(deriv[t - 1] - rhs).max())

    assert residual(17) < 1e-3
    assert residual(16) > 20 * residual(17) and residual(18) > 20 * residual(17)


def test_mackey_glass_converges_in_dt():
    """Halving dt changes the series less and less (second order: the half-step delayed
    value is interpolated linearly)."""
    a, b, c = (mackey_glass(100, dt=dt, washout=0) for dt in (0.1, 0.05, 0.025))
    assert a[0] == b[0] == c[0]  # the first sample is t = 0: the constant history
    err_coarse, err_fine = np.abs(a - b).max(), np.abs(b - c).max()
    assert err_coarse < 1e-4 and err_fine < err_coarse / 3


def test_mackey_glass_windows_predict_ahead():
    task = MackeyGlass()
    opts = task.options({"horizon": 5, "series_len": 1000})
    data = task.load(50, opts)
    x, y = data.sample(4, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 50, 1)
    assert torch.equal(x[:, 5:], y[:, :-5])  # the target is the input 5 steps later
    with pytest.raises(ValueError, match="exceeds the test part"):
        task.check(300, 4, opts)


# --- copy / adding ----------------------------------------------------------------------

def test_copy_batch_layout():
    x, y = copy_batch(6, 30, 5, torch.Generator().manual_seed(0))
    assert x.shape == (6, 30, 10) and y.shape == (6, 5)
    tokens = x.argmax(-1)
    assert torch.equal(tokens[:, :5], y) and y.min() >= 1 and y.max() <= 8
    assert (tokens[:, 30 - 5 - 1] == 9).all()  # the delimiter
    assert (tokens[:, 5:24] == 0).all() and (tokens[:, 25:] == 0).all()
    # perfect logits on the recall window score 1.0
    logits = torch.zeros(6, 30, 9)
    logits[:, -5:] = F.one_hot(y, 9).float() * 10
    assert Copy().score(logits, y)[0] == 1.0
    with pytest.raises(ValueError, match="seq_len must be >= 2\\*symbols \\+ 1 = 21"):
        Copy().check(20, 4, Copy().options({}))


def test_adding_batch_targets_and_chance_level():
    x, y = adding_batch(4000, 20, torch.Generator().manual_seed(0))
    marks = x[..., 1]
    assert (marks[:, :10].sum(1) == 1).all() and (marks[:, 10:].sum(1) == 1).all()
    assert torch.allclose(y, (x[..., 0] * marks).sum(1))
    mse_of_one = Adding().score(torch.ones(4000), y)[0]
    assert mse_of_one == pytest.approx(1 / 6, abs=0.02)  # Var of a sum of two U(0,1)


# --- textlm -----------------------------------------------------------------------------

def test_stdlib_corpus_is_deterministic():
    a = stdlib_corpus(50_000)
    assert len(a) == 50_000 and a == stdlib_corpus(50_000)
    assert b"def " in a


def test_textlm_from_folder_and_bits_per_byte(tmp_path):
    (tmp_path / "b.txt").write_bytes(b"world " * 100)
    (tmp_path / "a.txt").write_bytes(b"hello " * 100)
    text = read_corpus(str(tmp_path), 10_000)
    assert text.startswith(b"hello ") and b"world" in text  # sorted file order
    task = TextLM()
    opts = task.options({"data": str(tmp_path)})
    data = task.load(16, opts)
    x, y = data.sample(3, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (3, 16) and torch.equal(x[:, 1:], y[:, :-1])
    uniform = torch.zeros(2, 16, 256)
    bpb, nats = task.score(uniform, data.test_y[:2])
    assert bpb == pytest.approx(8.0) and nats == pytest.approx(math.log(256))
    with pytest.raises(ValueError, match="does not exist"):
        task.check(16, 2, task.options({"data": str(tmp_path / "missing")}))


# --- training ---------------------------------------------------------------------------

@pytest.mark.slow
def test_tiny_training_run_learns_and_times_to_target():
    torch.manual_seed(0)
    task = PsDigits()
    opts = task.options({"lr": 1e-2, "max_steps": 40, "eval_every": 10, "target": 0.3,
                         "max_wall_s": 120})
    model = architectures.build("lmu-fft", preset="tiny", theta=64.0)
    data = task.load(64, opts)  # native 8x8 digits: 64 steps
    res = train(model, task, data, opts, batch=32, seq_len=64, device=torch.device("cpu"),
                dtype=torch.float32, seed=0)
    steps = [p.step for p in res.curve]
    assert steps == [0, 10, 20, 30, 40] and res.stopped_by == "max_steps"
    assert [p.tokens_seen for p in res.curve] == [s * 32 * 64 for s in steps]
    first, last = res.curve[0], res.curve[-1]
    assert last.test_loss < 0.7 * first.test_loss  # test loss fell
    assert last.metric > 0.5  # well above chance (0.1)
    hit = next(p for p in res.curve if p.metric >= 0.3)
    assert res.time_to_target_s == hit.wall_s and res.steps_to_target == hit.step
    assert res.train_s == pytest.approx(sum(res.step_times_s))
    # stored as rows named by curve_columns, and typed again on the way back
    m = res.metrics()
    assert m["curve"][1] == [p for p in astuple(res.curve[1])]
    back = TaskResult.from_metrics(m)
    assert back.curve == res.curve and back.final == res.final and back.best() == res.best()


def test_task_cell_through_the_worker():
    """A task cell runs in the worker like any other and yields a strict-JSON record."""
    cell = Cell.make(arch="lmu-fft", workload="adding", seq_len=16, batch=8, preset="tiny",
                     overrides={"theta": 16.0, "max_steps": 6, "eval_every": 3,
                                "test_size": 64})
    rec = run_cell(cell, RunSettings())
    assert rec.status == "ok", rec.message
    m = rec.metrics
    assert m["metric"] == "mse" and m["higher_is_better"] is False
    assert m["options"]["max_steps"] == 6 and m["steps"] == 6 == rec.n_samples
    assert [row[0] for row in m["curve"]] == [0, 3, 6]
    assert m["curve_columns"][:4] == ["step", "wall_s", "tokens_seen", "metric"]
    assert m["params"] == rec.params == architectures.build(
        "lmu-fft", preset="tiny", theta=16.0, input_size=2, output_size=1).num_params()
    assert rec.time_median_s > 0 and rec.tokens_per_s == pytest.approx(8 * 16 / rec.time_median_s)
    json.loads(rec.to_json())


# --- suites and the command line --------------------------------------------------------

def test_task_suites_load():
    for name in ("tasks-smoke", "tasks"):
        cells = load_suite(name).cells("cpu")
        assert {c.workload for c in cells} >= {"psdigits"}
        fft = next(c for c in cells if c.arch == "lmu-fft" and c.workload == "psdigits")
        assert "max_wall_s" in dict(fft.overrides)


def run_cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return harness("run", "--out", tmp_path / "run", *args)


@pytest.mark.slow
def test_cli_unknown_task_and_missing_idx_exit_2(tmp_path):
    r = run_cli("--suite", "tasks-smoke", "--workload", "mnist-fly", tmp_path=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "unknown workload 'mnist-fly'" in r.stderr and "psdigits" in r.stderr
    r = run_cli("--suite", "tasks-smoke", "--workload", "psmnist", "--arch", "lmu-fft",
                "--seq-len", "784", "--set", f"data={tmp_path / 'absent'}", tmp_path=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "psmnist" in r.stderr and "absent" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "records.jsonl").exists()


def test_workload_split_routes_keys():
    w = workloads.get("copy")
    assert isinstance(w, TaskWorkload)
    opts, adapter = w.split({"theta": 40.0, "lr": 0.5, "symbols": 3})
    assert adapter == {"theta": 40.0} and opts.lr == 0.5 and opts.symbols == 3
    assert w.io(opts) == {"input_size": 10, "output_size": 9}
