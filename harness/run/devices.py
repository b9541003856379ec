"""The one parser of device names the command line and the Python API accept.

``cpu``, ``cuda`` (the current CUDA device) or ``cuda:N``; anything else, a CUDA device on
a machine without CUDA, or an index the machine does not have is a ``UsageError`` naming
the valid choices. Pure functions of their argument and of what torch reports.
(:func:`harness.measure.timing.parse_device` is the Timer's own argument check: it turns
an already valid name into a ``torch.device``.)

And the device side of a cell process:

* ``torch.cuda.set_device`` takes an int or a device *with an index*: an index-less
  ``torch.device("cuda")`` raises ``ValueError: Expected a torch.device with a specified
  index`` (``torch.cuda._utils._get_device_index``, optional=False). :func:`enter`
  resolves ``cuda`` to the current CUDA device's index before selecting it, for the
  worker and ``profile`` alike.
* The float32 precision policy is explicit, the same for every architecture of a run:
  ``strict`` (IEEE float32 matmuls and convolutions: cuBLAS and cuDNN TF32 off, although
  cuDNN's own default is on) or ``tf32`` (both on). Fused kernels that compute in TF32
  whatever the flags say are kept off under ``strict`` (``architectures.optional``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from architectures.optional import POLICIES
from harness.errors import UsageError, choice

DEVICE_SYNTAX = re.compile(r"cpu|cuda(:\d+)?")
DEFAULT_POLICY = "strict"


def default_device() -> str:
    """``cuda`` when this machine has it, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(spec: str | None) -> str:
    """``spec`` validated (``None``: the default device); returned as given, so cell ids
    written with it stay the same across resumes."""
    if spec is None:
        return default_device()
    if not isinstance(spec, str) or not DEVICE_SYNTAX.fullmatch(spec):
        raise choice("device", spec, ["cpu", "cuda", "cuda:N"])
    if spec == "cpu":
        return spec
    if not torch.cuda.is_available():
        raise UsageError(
            f"device {spec!r} requested but CUDA is not available; valid choices: cpu"
        )
    count = torch.cuda.device_count()
    index = spec.partition(":")[2]
    if index and int(index) >= count:
        raise choice("device", spec, ["cpu", "cuda"] + [f"cuda:{i}" for i in range(count)])
    return spec


def parse_devices(spec: Sequence[str] | None) -> list[str] | None:
    """``--devices``: a list of device names, or ``["all"]`` for every CUDA device as
    ``cuda:0``, ``cuda:1``, ... (``None`` or empty: not given)."""
    if not spec:
        return None
    if list(spec) == ["all"]:
        if not torch.cuda.is_available():
            raise UsageError("--devices all requested but CUDA is not available")
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return [resolve_device(d) for d in spec]


def index_of(device: str | torch.device) -> torch.device:
    """``device`` with its CUDA index filled in (the current device's when absent)."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def enter(device: str | torch.device) -> torch.device:
    """Select ``device`` for this process (CUDA: ``set_device`` with an index) and return it."""
    dev = index_of(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev


def set_float32_policy(policy: str) -> None:
    """Set cuBLAS and cuDNN TF32 explicitly (both on for ``tf32``, both off for ``strict``)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown float32 precision policy {policy!r}; valid choices: "
                         f"{', '.join(POLICIES)}")
    tf32 = policy == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
