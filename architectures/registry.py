"""Name → adapter builder, with size presets read from ``presets.toml``.

``build(name, preset=..., **overrides)`` merges the preset's configuration with the
overrides and calls the adapter's constructor; unknown names, presets and keys raise
``ValueError`` naming the valid choices.
"""

from __future__ import annotations

import inspect
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from architectures.base import AdapterInfo, SequenceModel

DEFAULT_PRESET = "small"
# Presets are sized (parameter counts) at this input/output shape: psMNIST-shaped,
# the parallel LMU paper's reference task. Workloads use it too unless a task says otherwise.
REFERENCE_IO = {"input_size": 1, "output_size": 10}


@dataclass(frozen=True)
class AdapterSpec:
    info: AdapterInfo
    cls: type[SequenceModel]
    config_keys: tuple[str, ...]
    presets: dict[str, dict[str, Any]]  # from register(presets=...); presets.toml wins


_REGISTRY: dict[str, AdapterSpec] = {}


def register(
    name: str,
    *,
    family: str,
    description: str,
    parallel_training: bool,
    stepwise: bool,
    time_complexity: str,
    memory_complexity: str,
    step_memory: str = "O(1)",
    presets: dict[str, dict[str, Any]] | None = None,
    last_output_of: str = "",
) -> Callable[[type[SequenceModel]], type[SequenceModel]]:
    """Class decorator adding an adapter to the registry under ``name``.

    Built-in adapters keep their size presets in ``presets.toml``; a plugin adapter can
    pass ``presets={"small": {...}}`` here instead.
    """

    def deco(cls: type[SequenceModel]) -> type[SequenceModel]:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"adapter {name!r} is already registered")
        info = AdapterInfo(
            name=name,
            family=family,
            description=description,
            parallel_training=parallel_training,
            stepwise=stepwise,
            time_complexity=time_complexity,
            memory_complexity=memory_complexity,
            step_memory=step_memory,
            last_output_of=last_output_of,
        )
        keys = tuple(p for p in inspect.signature(cls.__init__).parameters if p != "self")
        _REGISTRY[name] = AdapterSpec(
            info=info, cls=cls, config_keys=keys, presets=dict(presets or {})
        )
        # a class registered under several names (lmu-fft / lmu-conv) keeps the first
        if not hasattr(cls, "info") or "info" not in cls.__dict__:
            cls.info = info
        return cls

    return deco


def available() -> list[str]:
    """Names of all registered adapters, in registration order."""
    return list(_REGISTRY)


def spec(name: str) -> AdapterSpec:
    if name not in _REGISTRY:
        raise ValueError(f"unknown adapter {name!r}; valid choices: {', '.join(available())}")
    return _REGISTRY[name]


def info(name: str) -> AdapterInfo:
    return spec(name).info


@cache
def _all_presets() -> dict[str, dict[str, dict[str, Any]]]:
    text = resources.files("architectures").joinpath("presets.toml").read_text()
    return tomllib.loads(text)


def presets(name: str) -> dict[str, dict[str, Any]]:
    """The named size presets of adapter ``name`` (preset → constructor config)."""
    return _all_presets().get("adapters", {}).get(name) or spec(name).presets


def target_params(preset: str) -> int:
    """The parameter count every adapter's ``preset`` is sized to (at REFERENCE_IO)."""
    sizes = _all_presets()["sizes"]
    if preset not in sizes:
        raise ValueError(f"unknown preset {preset!r}; valid choices: {', '.join(sizes)}")
    return int(sizes[preset])


def preset_config(name: str, preset: str | None = DEFAULT_PRESET) -> dict[str, Any]:
    if preset is None:
        return {}
    table = presets(name)
    if preset not in table:
        valid = ", ".join(table) or "(none)"
        raise ValueError(f"unknown preset {preset!r} for {name!r}; valid choices: {valid}")
    return dict(table[preset])


def build(name: str, preset: str | None = DEFAULT_PRESET, **overrides: Any) -> SequenceModel:
    """Build adapter ``name`` from ``preset`` (None: constructor defaults) plus overrides."""
    s = spec(name)
    config = {**REFERENCE_IO, **preset_config(name, preset), **overrides}
    unknown = sorted(set(config) - set(s.config_keys))
    if unknown:
        raise ValueError(
            f"unknown configuration key(s) {unknown} for {name!r}; "
            f"valid choices: {', '.join(s.config_keys)}"
        )
    model = s.cls(**config)
    model.info = s.info  # the instance reports the name it was built under
    return model
