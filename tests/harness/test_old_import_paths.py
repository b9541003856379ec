"""The old import paths stay for the asv suite across its history (``harness.timing``,
``harness.memory``) and the README's Python API (``harness.sweep``, ``harness.results``):
each name they export is the new module's own object, not a copy that could drift."""

from __future__ import annotations

import importlib

import pytest

OLD = [
    ("harness.timing", "harness.measure.timing",
     {"Measurement": "Measurement", "Timer": "Timer", "TimingConfig": "TimingConfig",
      "parse_device": "parse_device"}),
    ("harness.memory", "harness.measure.memory", {"MemoryTracker": "MemoryTracker"}),
    ("harness.sweep", "harness.run.sweep", {"execute": "execute", "plan": "plan", "run": "run"}),
    ("harness.results", "harness.store.load", {"load": "load_runs"}),
    ("harness.results", "harness.store.rundir", {"RunDir": "RunDir"}),
]


@pytest.mark.parametrize("old, new, names", OLD, ids=[f"{o}->{n}" for o, n, _ in OLD])
def test_an_old_path_exports_the_new_modules_objects(old, new, names):
    before, now = importlib.import_module(old), importlib.import_module(new)
    assert set(names) <= set(before.__all__)
    for name, new_name in names.items():
        assert getattr(before, name) is getattr(now, new_name), f"{old}.{name}"


def test_every_exported_name_of_an_old_path_is_checked():
    for old in {o for o, _, _ in OLD}:
        checked = {n for o, _, names in OLD if o == old for n in names}
        assert set(importlib.import_module(old).__all__) == checked, old
