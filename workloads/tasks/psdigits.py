"""``psdigits``: the psMNIST protocol on scikit-learn's handwritten digits (offline).

The 1,797 8x8 digits of ``sklearn.datasets.load_digits`` are upsampled (bilinear) to
``side x side`` with ``seq_len = side**2`` (784 = 28x28 by default, MNIST's size), read
as one pixel per step in a fixed random order (the same permutation for every run and
model), and classified from the model's output at the last step. A fixed stratified
20% test split; pixels are standardised with the training split's mean and std.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from workloads.tasks.base import EpochSampler, Task, TaskData, TrainOptions

PERMUTATION_SEED = 1234  # fixed: every run and model sees the same pixel order
SPLIT_SEED = 0
TEST_FRACTION = 0.2


def side_of(seq_len: int, task: str, max_side: int = 28, min_side: int = 2) -> int:
    """``seq_len`` must be a square ``side**2`` (pixels of a side x side image)."""
    side = math.isqrt(seq_len)
    if side * side != seq_len or not min_side <= side <= max_side:
        valid = ", ".join(str(s * s) for s in (8, 14, 16, 28) if min_side <= s <= max_side)
        raise ValueError(
            f"{task}: seq_len must be side**2 with {min_side} <= side <= {max_side} "
            f"(pixels of a square image), got {seq_len}; e.g. {valid}"
        )
    return side


def permutation(n: int, permute: bool = True) -> torch.Tensor:
    """The fixed pixel order of an ``n``-pixel image (identity when not permuted)."""
    if not permute:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(PERMUTATION_SEED))


def pixel_sequences(images: torch.Tensor, side: int, permute: bool = True) -> torch.Tensor:
    """``(N, H, W)`` images in [0, 1] → ``(N, side**2, 1)`` permuted pixel sequences."""
    x = images.float()[:, None]
    if x.shape[-2:] != (side, side):
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    seq = x.reshape(len(x), side * side)
    return seq[:, permutation(side * side, permute)][..., None].contiguous()


def standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = train.mean(), train.std().clamp_min(1e-8)
    return (train - mean) / std, (test - mean) / std


def split_digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fixed stratified split: ``(train_images, train_labels, test_images, test_labels)``,
    images ``(N, 8, 8)`` in [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    images = torch.tensor(d.images, dtype=torch.float32) / 16.0
    labels = torch.tensor(d.target, dtype=torch.long)
    i_train, i_test = train_test_split(
        range(len(labels)), test_size=TEST_FRACTION, random_state=SPLIT_SEED,
        stratify=d.target,
    )
    i_train, i_test = torch.tensor(i_train), torch.tensor(i_test)
    return images[i_train], labels[i_train], images[i_test], labels[i_test]


class PixelClassification(Task):
    """Shared by psdigits and psmnist: classify a pixel sequence from its last output."""

    metric = "accuracy"
    higher_is_better = True
    metric_label = "test accuracy (%)"
    metric_scale = 100.0
    last_position = True  # out is (batch, 10): the logits at the last pixel

    def io(self, opts: TrainOptions) -> tuple[int, int]:
        return 1, 10

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.float(), y)

    def score(self, out: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        out = out.float()
        acc = (out.argmax(-1) == y).float().mean().item()
        return acc, F.cross_entropy(out, y).item()

    def data(self, train_img, train_lab, test_img, test_lab, seq_len, permute, source):
        side = side_of(seq_len, self.name)
        x_train, x_test = standardise(
            pixel_sequences(train_img, side, permute), pixel_sequences(test_img, side, permute)
        )
        info = {"source": source, "n_train": len(x_train), "n_test": len(x_test),
                "side": side, "permuted": permute, "permutation_seed": PERMUTATION_SEED}
        return TaskData(EpochSampler(x_train, train_lab), x_test, test_lab, info)


@dataclass(frozen=True)
class PsDigitsOptions(TrainOptions):
    lr: float = 3e-3
    target: float = 0.8  # test accuracy
    permute: bool = True  # False: sequential (unpermuted) digits


class PsDigits(PixelClassification):
    name = "psdigits"
    description = "permuted pixel-sequence digits (sklearn load_digits upsampled to 28x28)"
    Options = PsDigitsOptions

    def check(self, seq_len: int, batch: int, opts: TrainOptions) -> None:
        side_of(seq_len, self.name)

    def load(self, seq_len: int, opts: TrainOptions) -> TaskData:
        return self.data(*split_digits(), seq_len, opts.permute, "sklearn.datasets.load_digits")
