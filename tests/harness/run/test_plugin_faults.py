"""Plugins and profiling (issue 16, case 11): a plugin that exits at import is a clear
usage error; ``profile --from`` a run made with ``--plugin`` loads the run's plugins; a
crashing adapter fails its own profile only."""

from __future__ import annotations

import pytest

from harness.store.rundir import RunDir
from tests.helpers import PLUGIN, cli

FAST_PROFILE = ("--wait", "0", "--warmup", "0", "--active", "1", "--no-stack", "--no-memory",
                "--top", "0")


@pytest.mark.parametrize("body,shown", [("import sys\nsys.exit(3)\n", "sys.exit(3)"),
                                        ("raise SystemExit\n", "sys.exit(None)"),
                                        ("exit('bye')\n", "sys.exit('bye')")])
@pytest.mark.parametrize("command", ["run", "profile"])
def test_a_plugin_exiting_at_import_is_a_usage_error(tmp_path, capsys, body, shown, command):
    plugin = tmp_path / f"quits_{command}.py"
    plugin.write_text(body)
    args = (["run", "--suite", "smoke", "--out", str(tmp_path / "run")] if command == "run"
            else ["profile", "--arch", "lmu", "--seq-len", "8"])
    code, _, err = cli(capsys, *args, "--plugin", str(plugin))
    assert code == 2, err
    line = err.strip().splitlines()[-1]
    assert str(plugin) in line and shown in line and "import" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_profile_from_a_plugin_run_loads_its_plugins(tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = cli(capsys, "run", "--plugin", PLUGIN, "--suite", "smoke", "--arch",
                       "test-ok", "--workload", "forward", "--seq-len", "8", "--batch", "1",
                       "--budget-s", "0.02", "--out", str(run))
    assert code == 0, err
    assert RunDir(run).plan()["plugins"] == [PLUGIN]
    (rec,) = RunDir(run).records()
    code, out, err = cli(capsys, "profile", "--from", str(run), "--cell", rec.cell_id,
                         "--out", str(tmp_path / "prof"), *FAST_PROFILE)
    assert code == 0, out + err
    assert list((tmp_path / "prof").glob("*/profile.json"))


@pytest.mark.slow
def test_a_segfaulting_adapter_fails_its_profile_only(tmp_path, capsys):
    code, out, err = cli(capsys, "profile", "--plugin", PLUGIN, "--arch", "test-segv,test-ok",
                         "--workload", "forward", "--seq-len", "8", "--batch", "1",
                         "--preset", "tiny", "--set", "fail_at=1",
                         "--out", str(tmp_path / "prof"), *FAST_PROFILE)
    assert code == 1, out + err
    assert "failed: cell process died from SIGSEGV (crash" in out
    done = [p.parent.name for p in (tmp_path / "prof").glob("*/profile.json")]
    assert len(done) == 1 and done[0].startswith("test-ok")


def test_a_plugin_failing_at_import_fails_every_time_not_once(tmp_path):
    """A half-imported plugin left in sys.modules made the second load a silent success."""
    from harness.errors import UsageError
    from harness.run.plugins import load_plugin

    plugin = tmp_path / "half.py"
    plugin.write_text("X = 1\nraise RuntimeError('broken at import')\n")
    for _ in range(2):
        with pytest.raises(UsageError, match="broken at import"):
            load_plugin(str(plugin))
