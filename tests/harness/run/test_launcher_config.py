"""The Slurm launcher's configuration and job grouping, without a cluster: which cells a
job gets, which configurations and launchers are refused (the Slurm path for real:
tests/integration/test_launchers.py and test_slurm_cluster.py)."""

from __future__ import annotations

import pytest

from harness.errors import UsageError
from harness.run.launchers.slurm import SlurmConfig, make_jobs
from harness.run.sweep import execute, plan
from harness.store.records import Cell
from tests.helpers import FAILING_SUITE, ROOT, write_suite


def test_make_jobs_keeps_length_series_together():
    cells = [Cell.make(arch=a, workload="forward", seq_len=n, batch=1)
             for a in ("x", "y", "z") for n in (64, 8, 16)]
    jobs = make_jobs(cells, cells_per_job=4)
    assert [[(c.arch, c.seq_len) for c in j] for j in jobs] == [
        [("x", 8), ("x", 16), ("x", 64)], [("y", 8), ("y", 16), ("y", 64)],
        [("z", 8), ("z", 16), ("z", 64)]]
    jobs = make_jobs(cells, cells_per_job=2)  # a series longer than a job: split in order
    assert [[(c.arch, c.seq_len) for c in j] for j in jobs][:2] == [
        [("x", 8), ("x", 16)], [("x", 64)]]
    assert sorted(c.cell_id for j in jobs for c in j) == sorted(c.cell_id for c in cells)
    assert max(len(j) for j in jobs) == 2


def test_slurm_config_rejects_bad_values(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text('partition = "gpu"\ncells_per_jobs = 4\n')
    with pytest.raises(UsageError, match="cells_per_jobs.*valid choices.*cells_per_job"):
        SlurmConfig.load(path)
    with pytest.raises(UsageError, match="cluster 'pbs'.*slurm, local, debug"):
        SlurmConfig(cluster="pbs")
    with pytest.raises(UsageError, match="cells_per_job must be a positive integer, got 0"):
        SlurmConfig(cells_per_job=0)
    example = SlurmConfig.load(ROOT / "harness" / "run" / "launchers" / "slurm.example.toml")
    assert example.partition and example.gpus_per_job >= 1 and example.slurm


def test_launcher_config_without_slurm_is_rejected(tmp_path):
    p = plan(write_suite(tmp_path, FAILING_SUITE, rounds=5), device="cpu", out=tmp_path / "run")
    with pytest.raises(UsageError, match="--launcher-config applies to --launcher slurm"):
        execute(p, launcher_config=tmp_path / "x.toml")
    with pytest.raises(UsageError, match="unknown launcher 'pbs'.*local, slurm"):
        execute(p, launcher="pbs")
