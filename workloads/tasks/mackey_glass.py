"""``mackey-glass``: predict the chaotic Mackey-Glass series ahead (the original LMU task).

    dx/dt = beta x(t - tau) / (1 + x(t - tau)**power) - gamma x(t)

with the standard beta=0.2, gamma=0.1, power=10, tau=17 (chaotic), integrated by RK4 on
a fine grid (dt=0.1, so the delay is a whole number of steps; the half-step delayed value
is the mean of its two neighbours), from a constant initial history drawn with a fixed
seed, and sampled every time unit after a wash-out. The first 80% is for training, the
rest for testing; values are standardised with the training part's mean and std.

At every position of a ``seq_len`` window the model predicts the value ``horizon``
samples ahead; loss: MSE over all positions; metric: NRMSE = RMSE / std(target) over
the test windows (1.0 is predicting the mean; lower is better).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from workloads.tasks.base import Task, TaskData, TrainOptions

SERIES_SEED = 0  # fixed: every run and model sees the same series
TEST_FRACTION = 0.2


def mackey_glass(
    n_samples: int,
    *,
    tau: float = 17.0,
    beta: float = 0.2,
    gamma: float = 0.1,
    power: float = 10.0,
    dt: float = 0.1,
    sample_dt: float = 1.0,
    washout: int = 500,
    seed: int = SERIES_SEED,
) -> np.ndarray:
    """``n_samples`` values of the series, one every ``sample_dt`` time units, after
    ``washout`` samples; the history on [-tau, 0] is a constant in [0.5, 1.5] from ``seed``."""
    lag = round(tau / dt)
    every = round(sample_dt / dt)
    if abs(lag * dt - tau) > 1e-9 or abs(every * dt - sample_dt) > 1e-9 or lag < 1:
        raise ValueError(f"tau ({tau}) and sample_dt ({sample_dt}) must be multiples of dt ({dt})")
    steps = (n_samples + washout) * every
    x = np.empty(lag + 1 + steps)
    # a constant history (so the series does not depend on dt), drawn from the seed
    x[: lag + 1] = np.random.default_rng(seed).uniform(0.5, 1.5)

    def f(xt: float, xd: float) -> float:
        return beta * xd / (1.0 + xd**power) - gamma * xt

    for i in range(lag, lag + steps):
        d0, d1 = x[i - lag], x[i - lag + 1]  # delayed values at t and t + dt
        dh = 0.5 * (d0 + d1)  # at t + dt/2
        k1 = f(x[i], d0)
        k2 = f(x[i] + 0.5 * dt * k1, dh)
        k3 = f(x[i] + 0.5 * dt * k2, dh)
        k4 = f(x[i] + dt * k3, d1)
        x[i + 1] = x[i] + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x[lag + washout * every :: every][:n_samples].copy()  # index lag is t = 0


@dataclass(frozen=True)
class MackeyGlassOptions(TrainOptions):
    target: float = 0.2  # test NRMSE
    horizon: int = 15  # samples ahead to predict
    series_len: int = 5000  # samples generated (train + test)
    tau: float = 17.0
    eval_windows: int = 64  # test windows, evenly spaced over the test part


class MackeyGlass(Task):
    name = "mackey-glass"
    description = "predict the Mackey-Glass series (tau=17) horizon steps ahead; NRMSE"
    metric = "nrmse"
    higher_is_better = False
    metric_label = "test NRMSE"
    Options = MackeyGlassOptions

    def io(self, opts: TrainOptions) -> tuple[int, int]:
        return 1, 1

    def check(self, seq_len: int, batch: int, opts: TrainOptions) -> None:
        if opts.horizon < 1:
            raise ValueError(f"mackey-glass: horizon must be >= 1, got {opts.horizon}")
        n_test = int(opts.series_len * TEST_FRACTION)
        if seq_len + opts.horizon > n_test:
            raise ValueError(
                f"mackey-glass: seq_len + horizon ({seq_len + opts.horizon}) exceeds the test "
                f"part ({n_test} samples); raise series_len (now {opts.series_len})"
            )

    def load(self, seq_len: int, opts: TrainOptions) -> TaskData:
        series = mackey_glass(opts.series_len, tau=opts.tau)
        n_train = opts.series_len - int(opts.series_len * TEST_FRACTION)
        mean, std = series[:n_train].mean(), series[:n_train].std()
        s = torch.tensor((series - mean) / std, dtype=torch.float32)
        train, test = s[:n_train], s[n_train:]
        h = opts.horizon

        def windows(part: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            idx = starts[:, None] + torch.arange(seq_len)
            return part[idx][..., None], part[idx + h][..., None]

        def sample(batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            starts = torch.randint(0, len(train) - seq_len - h + 1, (batch,), generator=gen)
            return windows(train, starts)

        stride = seq_len + h
        count = min(opts.eval_windows, (len(test) - h) // seq_len)
        starts = torch.linspace(0, len(test) - stride, max(count, 1)).long()
        test_x, test_y = windows(test, starts)
        info = {"source": f"mackey-glass tau={opts.tau} seed={SERIES_SEED}", "n_train": n_train,
                "n_test": len(test), "test_windows": len(starts), "horizon": h}
        return TaskData(sample, test_x, test_y, info)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out.float(), y)

    def score(self, out: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        mse = F.mse_loss(out.float(), y).item()
        return (mse**0.5) / y.std().item(), mse
