"""The plan-time build of each configuration (issue 22): any constructor failure is one
line of usage error naming the configuration, and the build never happens in the
command's own process (no allocation there, a memory cap on it)."""

from __future__ import annotations

import psutil
import pytest

from harness.errors import UsageError
from harness.run.buildcheck import check_configs, configs_of
from harness.run.plugins import load_plugins
from harness.store.records import Cell
from tests.helpers import PLUGIN, cli


def cells(**overrides) -> list[Cell]:
    load_plugins([PLUGIN])
    return [Cell.make(arch="test-build", workload="forward", seq_len=n, batch=1,
                      overrides=overrides) for n in (8, 16)]


@pytest.mark.parametrize("error", ["MemoryError", "RuntimeError"])
def test_a_constructor_that_raises_is_a_usage_error(error):
    with pytest.raises(UsageError, match=f"test-build .*build_error.*{error}: injected"):
        check_configs(cells(build_error=error), plugins=[PLUGIN])


def test_a_model_larger_than_the_cap_fails_in_the_build_process_not_here():
    before = psutil.Process().memory_info().rss
    with pytest.raises(UsageError, match="test-build .*build_mb.*(MemoryError|allocate)"):
        check_configs(cells(build_mb=600), plugins=[PLUGIN], mem_cap_bytes=256 * 2**20)
    check_configs(cells(build_mb=300), plugins=[PLUGIN], mem_cap_bytes=512 * 2**20)  # fits
    assert psutil.Process().memory_info().rss - before < 100 * 2**20  # built elsewhere


def test_a_build_slower_than_the_cell_time_limit_is_stopped():
    from harness.run import forkserver

    check_configs(cells(), plugins=[PLUGIN])  # the server is up
    server = psutil.Process(forkserver._pid())
    before = {p.pid for p in server.children()}
    with pytest.raises(UsageError, match=r"took longer than the cell time limit \(1 s\)"):
        check_configs(cells(build_s=60.0), plugins=[PLUGIN], timeout_s=1.0)
    assert {p.pid for p in server.children()} <= before  # the slow build was killed


def test_one_build_per_configuration():
    assert len(configs_of(cells(fail_at=4) + cells(fail_at=4) + cells())) == 2


def test_from_the_command_line(tmp_path, capsys):
    code, _, err = cli(capsys, "run", "--plugin", PLUGIN, "--arch", "test-build", "--workload",
                       "forward", "--seq-len", "8", "--batch", "1", "--set",
                       "build_error=RuntimeError", "--device", "cpu", "--out", str(tmp_path / "r"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "injected at build" in err
    assert not (tmp_path / "r").exists()
