"""``textlm``: byte-level language modelling; metric bits per byte on held-out text.

Text comes from ``set = {data = "PATH"}`` (a file, or a folder whose files are read in
sorted order) or, by default, from an offline corpus every Python installation ships:
the standard library's ``.py`` sources (sorted paths under ``sysconfig``'s stdlib, tests
and site-packages left out), concatenated up to ``corpus_bytes``. The corpus differs
between Python versions, so its size and sha256 are stored with the record. The first
90% trains, the last 10% tests.

Bytes enter through a task-owned ``nn.Embedding(256, embed_dim)`` (the model's
``input_size`` is ``embed_dim``); the model's 256 outputs are next-byte logits at every
position. Bits per byte = mean next-byte cross-entropy / ln 2 over fixed test windows.
"""

from __future__ import annotations

import hashlib
import math
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from workloads.tasks.base import Task, TaskData, TrainOptions

TEST_FRACTION = 0.1
SKIP_DIRS = {"test", "tests", "site-packages", "dist-packages", "idlelib", "__pycache__"}


def stdlib_corpus(max_bytes: int) -> bytes:
    """The standard library's ``.py`` sources in sorted path order, up to ``max_bytes``."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        p for p in root.rglob("*.py")
        if not SKIP_DIRS.intersection(p.relative_to(root).parts[:-1])
    )
    return _concat(files, max_bytes)


def _concat(files: list[Path], max_bytes: int) -> bytes:
    parts, total = [], 0
    for p in files:
        try:
            b = p.read_bytes()
        except OSError:
            continue
        parts.append(b)
        total += len(b)
        if total >= max_bytes:
            break
    return b"\n".join(parts)[:max_bytes]


def read_corpus(path: str, max_bytes: int) -> bytes:
    """The bytes of a file, or of a folder's files in sorted order, up to ``max_bytes``."""
    p = Path(path).expanduser()
    if p.is_file():
        return p.read_bytes()[:max_bytes]
    if p.is_dir():
        return _concat(sorted(f for f in p.rglob("*") if f.is_file()), max_bytes)
    raise ValueError(f"textlm: data path {path!r} is neither a file nor a folder")


class ByteEmbedding(nn.Module):
    """Bytes ``(batch, n)`` → embedding → the sequence model → logits ``(batch, n, 256)``."""

    def __init__(self, model: nn.Module, embed_dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, embed_dim)
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.embed(x))


@dataclass(frozen=True)
class TextLMOptions(TrainOptions):
    target: float = 3.0  # test bits per byte
    data: str = ""  # file or folder; empty: the standard-library corpus
    corpus_bytes: int = 2_000_000
    embed_dim: int = 32
    eval_windows: int = 64  # fixed test windows of seq_len + 1 bytes


class TextLM(Task):
    name = "textlm"
    description = "byte-level language model (default corpus: Python stdlib sources); bits/byte"
    metric = "bits_per_byte"
    higher_is_better = False
    metric_label = "test bits per byte"
    Options = TextLMOptions

    def io(self, opts: TrainOptions) -> tuple[int, int]:
        return opts.embed_dim, 256

    def check(self, seq_len: int, batch: int, opts: TrainOptions) -> None:
        if opts.embed_dim < 1 or opts.corpus_bytes < 1:
            raise ValueError("textlm: embed_dim and corpus_bytes must be >= 1")
        if opts.data and not Path(opts.data).expanduser().exists():
            raise ValueError(f"textlm: data path {opts.data!r} does not exist")

    def load(self, seq_len: int, opts: TrainOptions) -> TaskData:
        text = read_corpus(opts.data, opts.corpus_bytes) if opts.data else stdlib_corpus(
            opts.corpus_bytes)
        data = torch.frombuffer(bytearray(text), dtype=torch.uint8).long()
        n_test = int(len(data) * TEST_FRACTION)
        train, test = data[: len(data) - n_test], data[len(data) - n_test:]
        if len(train) < seq_len + 2 or len(test) < seq_len + 1:
            raise ValueError(
                f"textlm: corpus of {len(data)} bytes is too small for seq_len {seq_len} "
                f"(needs > {math.ceil((seq_len + 1) / TEST_FRACTION)})"
            )

        def sample(batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            starts = torch.randint(0, len(train) - seq_len, (batch,), generator=gen)
            idx = starts[:, None] + torch.arange(seq_len + 1)
            w = train[idx]
            return w[:, :-1], w[:, 1:]

        count = max(1, min(opts.eval_windows, len(test) // (seq_len + 1)))
        starts = torch.linspace(0, len(test) - seq_len - 1, count).long()
        w = test[starts[:, None] + torch.arange(seq_len + 1)]
        info = {
            "source": opts.data or f"python stdlib sources ({sysconfig.get_python_version()})",
            "corpus_bytes": len(data), "n_train": len(train), "n_test": len(test),
            "test_windows": count, "sha256": hashlib.sha256(text).hexdigest()[:16],
        }
        return TaskData(sample, w[:, :-1], w[:, 1:], info)

    def wrap(self, model: nn.Module, opts: TrainOptions) -> nn.Module:
        return ByteEmbedding(model, opts.embed_dim)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.float().reshape(-1, out.shape[-1]), y.reshape(-1))

    def score(self, out: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        nats = self.loss(out, y).item()
        return nats / math.log(2), nats
