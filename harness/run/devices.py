"""The one parser of device names the command line and the Python API accept.

``cpu``, ``cuda`` (the current CUDA device) or ``cuda:N``; anything else, a CUDA device on
a machine without CUDA, or an index the machine does not have is a ``UsageError`` naming
the valid choices. Pure functions of their argument and of what torch reports.
(:func:`harness.measure.timing.parse_device` is the Timer's own argument check: it turns
an already valid name into a ``torch.device``.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from harness.errors import UsageError, choice

DEVICE_SYNTAX = re.compile(r"cpu|cuda(:\d+)?")


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
