"""Bad values on the command line (users' reports): each is one line ``error: ...`` naming
the value, exit 2, no traceback, no argparse usage dump, and nothing written to disk."""

from __future__ import annotations

import os
import tempfile

import pytest

from tests.helpers import cli, harness


def assert_one_line(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and "usage:" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(w in lines[0] for w in words), err


@pytest.fixture
def no_stage(monkeypatch):
    """A selftest stage starting fails the test: bad input must stop before any."""
    def refuse(*args, **kwargs):
        raise AssertionError("a selftest stage ran")

    monkeypatch.setattr("harness.selftest.run_selftest", refuse)


BAD_INTS = [("--batch", "0"), ("--batch", "-2"), ("--batch", "8,0"), ("--seq-len", "0"),
            ("--seq-len", "-3"), ("--seq-len", "256,-1")]


@pytest.mark.parametrize("flag,value", BAD_INTS, ids=[" ".join(b) for b in BAD_INTS])
@pytest.mark.parametrize("command", ["run", "profile"])
def test_a_length_or_batch_below_1_is_one_line(tmp_path, capsys, command, flag, value):
    out = tmp_path / "out"
    code, _, err = cli(capsys, command, "--arch", "lmu", flag, value, "--out", str(out))
    assert_one_line(code, err, flag, value.split(",")[-1], "positive integer")
    assert not out.exists()


@pytest.mark.slow
def test_batch_0_from_the_real_command_line(tmp_path):
    out = tmp_path / "out"
    r = harness("run", "--suite", "smoke", "--batch", "0", "--out", str(out))
    assert_one_line(r.returncode, r.stderr, "--batch", "0", "positive integer")
    assert not out.exists()


@pytest.mark.parametrize("value", ["-1", "x"])
def test_profile_top_below_0_is_refused(tmp_path, capsys, value):
    out = tmp_path / "out"
    code, _, err = cli(capsys, "profile", "--arch", "lmu", "--seq-len", "8", "--top", value,
                       "--out", str(out))
    assert_one_line(code, err, "--top", value)
    assert not out.exists()


CALIBRATE = [
    (["--seconds", "inf"], ["inf", "finite"]),
    (["--seconds", "nan"], ["nan", "finite"]),
    (["--seconds", "0"], ["0", "positive"]),
    (["--threads", "9999"], ["9999", f"between 1 and {len(os.sched_getaffinity(0))}"]),
    (["--threads", "0"], ["--threads", "0"]),
]


@pytest.mark.parametrize("args,words", CALIBRATE, ids=[" ".join(a) for a, _ in CALIBRATE])
def test_calibrate_refuses_endless_seconds_and_too_many_threads(capsys, monkeypatch, args,
                                                               words):
    monkeypatch.setattr("harness.cli.calibrate.run_calibration",
                        lambda *a: pytest.fail("calibration ran"))
    code, _, err = cli(capsys, "calibrate", *args)
    assert_one_line(code, err, *words)


@pytest.mark.parametrize("command", [["report"], ["status"], ["compare", "RUN"],
                                     ["profile", "--cell", "x", "--from"]], ids=lambda c: c[0])
def test_a_file_is_not_a_run_directory(tmp_path, capsys, command):
    afile = tmp_path / "records.jsonl"
    afile.write_text("{}\n")
    args = [a if a != "RUN" else str(afile) for a in command]
    code, _, err = cli(capsys, *args, str(afile))
    assert_one_line(code, err, str(afile), "is a file, not a run directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records.jsonl"]


def test_selftest_out_under_a_file_stops_before_any_stage(tmp_path, capsys, no_stage):
    afile = tmp_path / "afile"
    afile.write_text("")
    out = afile / "sub"
    code, _, err = cli(capsys, "selftest", "--device", "cpu", "--out", str(out))
    assert_one_line(code, err, str(out), "cannot create")
    assert [p.name for p in tmp_path.iterdir()] == ["afile"] and afile.read_text() == ""


def test_selftest_out_not_writable_stops_before_any_stage(tmp_path, capsys, monkeypatch,
                                                         no_stage):
    """An existing empty directory that cannot be written (chmod 0o500 as a user; root
    writes anyway, so the write itself is refused here)."""
    out = tmp_path / "ro"
    out.mkdir(mode=0o500)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    if os.geteuid() == 0:
        monkeypatch.setattr(tempfile, "TemporaryFile", denied)
    code, _, err = cli(capsys, "selftest", "--device", "cpu", "--out", str(out))
    assert_one_line(code, err, str(out), "cannot write", "Permission denied")
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_a_path_that_is_not_utf8_under_a_strict_locale(tmp_path):
    """Linux paths are bytes: a run and a report into ``run\\xff`` print their paths as
    given instead of failing after the work with UnicodeEncodeError (a report left
    without its closing line)."""
    base = os.fsencode(tmp_path)
    run, rep = base + b"/run\xff", base + b"/rep\xff"
    for args in ([b"run", b"--arch", b"lmu-fft,lstm", b"--workload", b"forward",
                  b"--seq-len", b"8", b"--batch", b"1", b"--preset", b"tiny", b"--budget-s",
                  b"0.05", b"--rounds", b"1", b"--device", b"cpu", b"--out", run],
                 [b"report", run, b"--baseline", b"lstm", b"--formats", b"png", b"--widths",
                  b"single", b"--resamples", b"200", b"--out", rep],
                 [b"status", run]):
        res = harness(*args, timeout=300, text=False, PYTHONIOENCODING="utf-8:strict")
        assert res.returncode == 0 and b"Traceback" not in res.stderr, res.stderr[-2000:]
    assert b"report written: " + rep + b"/index.md" in res.stdout or os.path.exists(
        rep + b"/index.md")
    assert b"run\xff" in res.stdout  # status names the directory as given


@pytest.mark.slow
def test_threads_sets_each_cell_process_threads(tmp_path, capsys):
    from harness.store.rundir import RunDir

    code, _, err = cli(capsys, "run", "--arch", "lmu-fft", "--workload", "forward", "--seq-len",
                       "8,16", "--batch", "1", "--preset", "tiny", "--budget-s", "0.05",
                       "--rounds", "1", "--device", "cpu", "--threads", "1", "--out",
                       str(tmp_path / "r"))
    assert code == 0, err
    assert [r.threads for r in RunDir(tmp_path / "r").records()] == [1, 1]
