"""One RunSettings, one set of defaults: a run's timing defaults are TimingConfig's."""

from __future__ import annotations

from dataclasses import fields

from harness.measure.timing import TimingConfig
from harness.run.settings import RunSettings
from harness.run.suites import load_suite


def test_run_and_timer_defaults_agree():
    run, timer = RunSettings(), TimingConfig()
    shared = {f.name for f in fields(RunSettings)} & {f.name for f in fields(TimingConfig)}
    assert shared == {"budget_s", "target_rel_ci", "noise_threshold"}
    for name in shared:
        assert getattr(run, name) == getattr(timer, name), name
    assert run.target_rel_ci == 0.05  # what runs have always used


def test_timing_config_carries_the_run_settings():
    s = RunSettings(budget_s=0.7, target_rel_ci=0.2, noise_threshold=0.3)
    cfg = s.timing()
    assert (cfg.budget_s, cfg.target_rel_ci, cfg.noise_threshold) == (0.7, 0.2, 0.3)
    assert cfg.ci_stop_min_samples == TimingConfig().ci_stop_min_samples  # the Timer's own


def test_suite_settings_override_the_defaults_and_keep_the_rest():
    s = load_suite("smoke").settings  # [settings] budget_s = 0.2, count_flops = false
    assert (s.budget_s, s.count_flops) == (0.2, False)
    assert s.timing().budget_s == 0.2
    assert s.target_rel_ci == TimingConfig().target_rel_ci
