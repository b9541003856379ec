"""``copy`` and ``adding``: synthetic long-memory tasks whose difficulty is ``seq_len``.

Sweeping ``seq_len`` shows where each memory breaks as the delay grows. Training data is
fresh every step (drawn by the run's generator); the test split is fixed (its own seed).

``copy`` (Arjovsky et al. 2016): ``symbols`` random symbols from an alphabet of 8, then
blanks, a delimiter at position ``seq_len - symbols - 1``, then ``symbols`` blanks during
which the model must output the symbols in order; the delay is ``seq_len - 2 symbols``.
Inputs are one-hot over 10 (blank, 8 symbols, delimiter); outputs 9 classes (blank + 8).
Loss: cross-entropy on the last ``symbols`` positions; metric: accuracy there (chance 1/8).

``adding`` (Hochreiter & Schmidhuber 1997): two channels, values uniform in [0, 1] and a
marker that is 1 at one position in each half; the target is the sum of the two marked
values, read from the last position. Loss and metric: MSE (predicting 1.0 scores 1/6).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from workloads.tasks.base import Task, TaskData, TrainOptions

TEST_SEED = 4321  # fixed test split, independent of the run's seed
ALPHABET = 8


def copy_batch(batch: int, seq_len: int, symbols: int, gen: torch.Generator):
    """``(x (batch, seq_len, 10) one-hot, y (batch, symbols) in 1..8)``."""
    y = torch.randint(1, ALPHABET + 1, (batch, symbols), generator=gen)
    tokens = torch.zeros(batch, seq_len, dtype=torch.long)
    tokens[:, :symbols] = y
    tokens[:, seq_len - symbols - 1] = ALPHABET + 1  # delimiter
    return F.one_hot(tokens, ALPHABET + 2).float(), y


def adding_batch(batch: int, seq_len: int, gen: torch.Generator):
    """``(x (batch, seq_len, 2), y (batch,))``: one marker in each half."""
    values = torch.rand(batch, seq_len, generator=gen)
    half = seq_len // 2
    first = torch.randint(0, half, (batch,), generator=gen)
    second = torch.randint(half, seq_len, (batch,), generator=gen)
    marks = torch.zeros(batch, seq_len)
    rows = torch.arange(batch)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    return torch.stack([values, marks], dim=-1), (values * marks).sum(1)


@dataclass(frozen=True)
class CopyOptions(TrainOptions):
    target: float = 0.9  # test accuracy on the recalled symbols
    symbols: int = 10
    test_size: int = 512


class Copy(Task):
    name = "copy"
    description = "copy memory: recall symbols after a delay of seq_len - 2*symbols"
    metric = "accuracy"
    higher_is_better = True
    metric_label = "test accuracy (%)"
    metric_scale = 100.0
    Options = CopyOptions

    def io(self, opts: TrainOptions) -> tuple[int, int]:
        return ALPHABET + 2, ALPHABET + 1

    def check(self, seq_len: int, batch: int, opts: TrainOptions) -> None:
        if opts.symbols < 1 or seq_len < 2 * opts.symbols + 1:
            raise ValueError(
                f"copy: seq_len must be >= 2*symbols + 1 = {2 * opts.symbols + 1} "
                f"(symbols={opts.symbols}), got {seq_len}"
            )

    def load(self, seq_len: int, opts: TrainOptions) -> TaskData:
        k = opts.symbols
        gen = torch.Generator().manual_seed(TEST_SEED)
        test_x, test_y = copy_batch(opts.test_size, seq_len, k, gen)
        info = {"source": f"synthetic copy, test seed {TEST_SEED}", "n_test": opts.test_size,
                "delay": seq_len - 2 * k, "symbols": k}
        return TaskData(lambda b, g: copy_batch(b, seq_len, k, g), test_x, test_y, info)

    def reduce(self, out: torch.Tensor) -> torch.Tensor:
        return out  # the recall window is cut in loss/score, which know its length

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = out[:, -y.shape[1]:].float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def score(self, out: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        logits = out[:, -y.shape[1]:].float()
        acc = (logits.argmax(-1) == y).float().mean().item()
        return acc, self.loss(out, y).item()


@dataclass(frozen=True)
class AddingOptions(TrainOptions):
    target: float = 0.01  # test MSE
    test_size: int = 1024


class Adding(Task):
    name = "adding"
    description = "adding problem: sum the two marked values of a seq_len sequence; MSE"
    metric = "mse"
    higher_is_better = False
    metric_label = "test MSE"
    metric_log_scale = True  # spans decades on the way to its target
    last_position = True  # out is (batch, 1): the sum read at the last position
    Options = AddingOptions

    def io(self, opts: TrainOptions) -> tuple[int, int]:
        return 2, 1

    def check(self, seq_len: int, batch: int, opts: TrainOptions) -> None:
        if seq_len < 2:
            raise ValueError(f"adding: seq_len must be >= 2, got {seq_len}")

    def load(self, seq_len: int, opts: TrainOptions) -> TaskData:
        gen = torch.Generator().manual_seed(TEST_SEED)
        test_x, test_y = adding_batch(opts.test_size, seq_len, gen)
        info = {"source": f"synthetic adding, test seed {TEST_SEED}", "n_test": opts.test_size}
        return TaskData(lambda b, g: adding_batch(b, seq_len, g), test_x, test_y, info)

    def reduce(self, out: torch.Tensor) -> torch.Tensor:
        return out[:, 0]

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out[:, 0].float(), y)

    def score(self, out: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        mse = F.mse_loss(out.float(), y).item()
        return mse, mse
