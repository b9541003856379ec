"""``psmnist``: permuted sequential MNIST from the standard IDX files (no download).

``set = {data = "/path/to/mnist"}`` names a folder holding the four files of
http://yann.lecun.com/exdb/mnist (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally ``.gz``). The
official 60k/10k split; the same fixed permutation and standardisation as ``psdigits``.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from workloads.tasks.base import TaskData, TrainOptions
from workloads.tasks.psdigits import PixelClassification, side_of

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# IDX type codes (third magic byte) → numpy dtypes, big-endian as the format stores them
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array of its declared shape and type."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        raise ValueError(
            f"{path}: unknown IDX type code 0x{code:02x}; valid choices: "
            f"{', '.join(f'0x{c:02x}' for c in IDX_DTYPES)}"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(v) for v in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX data has {len(raw) - header} bytes, shape {shape} needs {expected}"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_files(folder: str) -> dict[str, Path]:
    """The four MNIST files in ``folder`` (plain or .gz); ValueError naming what is missing."""
    if not folder:
        raise ValueError(
            "psmnist needs the MNIST IDX files: set data = \"DIR\" (--set data=DIR), a folder "
            f"with {', '.join(FILES.values())} (optionally .gz); nothing is downloaded"
        )
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ValueError(f"psmnist: data folder {folder!r} does not exist or is not a folder")
    found, missing = {}, []
    for key, name in FILES.items():
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            missing.append(name)
    if missing:
        raise ValueError(f"psmnist: {folder!r} lacks {', '.join(missing)} (plain or .gz)")
    return found


def load_mnist(folder: str) -> tuple[torch.Tensor, ...]:
    """``(train_images, train_labels, test_images, test_labels)``, images in [0, 1]."""
    files = find_files(folder)
    arrays = {k: read_idx(p) for k, p in files.items()}
    for part in ("train", "test"):
        img, lab = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if img.ndim != 3 or lab.ndim != 1 or len(img) != len(lab):
            raise ValueError(
                f"psmnist: {part} images {img.shape} and labels {lab.shape} do not match "
                "(expected (N, H, W) and (N,))"
            )
    return (
        torch.from_numpy(arrays["train_images"].astype(np.float32) / 255.0),
        torch.from_numpy(arrays["train_labels"].astype(np.int64)),
        torch.from_numpy(arrays["test_images"].astype(np.float32) / 255.0),
        torch.from_numpy(arrays["test_labels"].astype(np.int64)),
    )


@dataclass(frozen=True)
class PsMnistOptions(TrainOptions):
    target: float = 0.9  # test accuracy
    data: str = ""  # folder with the IDX files
    permute: bool = True


class PsMnist(PixelClassification):
    name = "psmnist"
    description = "permuted sequential MNIST from IDX files in a user folder (set data=DIR)"
    Options = PsMnistOptions

    def check(self, seq_len: int, batch: int, opts: TrainOptions) -> None:
        side_of(seq_len, self.name)
        find_files(opts.data)

    def load(self, seq_len: int, opts: TrainOptions) -> TaskData:
        data = self.data(*load_mnist(opts.data), seq_len, opts.permute, f"idx:{opts.data}")
        return data
