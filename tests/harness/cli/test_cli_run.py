"""Bad input to ``python -m harness run``: exit 2, one clear line, no traceback, and the
output directory untouched."""

from __future__ import annotations

import pytest

from tests.helpers import cli, harness

BAD = [
    (["--arch", "lmu,gru9"], "gru9", "lmu-fft"),
    (["--workload", "fly"], "fly", "forward"),
    (["--suite", "nosuch"], "nosuch", "smoke"),
    (["--device", "tpu"], "tpu", "cpu"),
    (["--dtype", "int8"], "int8", "float32"),
    (["--seq-len", "0"], "0", "positive"),
    (["--seq-len", "12.5"], "12.5", "integer"),
    (["--batch", "-3"], "-3", "positive"),
    (["--batch", "two"], "two", "integer"),
    (["--preset", "huge"], "huge", "tiny"),
    (["--set", "nosuchkey=3"], "nosuchkey", "order"),
    (["--set", "order=0", "--arch", "lmu"], "order", "positive integer"),
    (["--compile", "fastest"], "fastest", "reduce-overhead"),
    (["--suite", "/nonexistent/suite.toml"], "/nonexistent/suite.toml", "exist"),
]
if not __import__("torch").cuda.is_available():
    BAD.append((["--device", "cuda"], "cuda", "cpu"))


@pytest.mark.parametrize("args,bad,valid", BAD, ids=[" ".join(a) for a, _, _ in BAD])
def test_bad_input_exits_2_with_one_clear_line(tmp_path, capsys, args, bad, valid):
    out = tmp_path / "run"
    out.mkdir()
    sentinel = out / "records.jsonl"
    sentinel.write_text('{"kept": true}\n')
    code, _, err = cli(capsys, "run", "--suite", "smoke", *args, "--out", str(out))
    assert code == 2, err
    assert "Traceback" not in err
    msg = err.strip().splitlines()[-1]
    assert bad in msg and valid in msg, msg
    assert sorted(p.name for p in out.iterdir()) == ["records.jsonl"]
    assert sentinel.read_text() == '{"kept": true}\n'


@pytest.mark.slow
def test_invalid_suite_file_is_a_usage_error(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[cpu\narch = ")
    r = harness("run", "--suite", str(bad), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "not valid TOML" in r.stderr and "Traceback" not in r.stderr
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[settings]\nbudgetz = 1\n[cpu]\narch="lmu"\nworkload="forward"\n'
                       "seq_len=8\nbatch=1\n")
    code, _, err = cli(capsys, "run", "--suite", str(unknown), "--out", str(tmp_path / "o"))
    assert code == 2 and "budgetz" in err and "budget_s" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_smoke_run_end_to_end_prints_speedup_table(tmp_path):
    out = tmp_path / "run"
    r = harness("run", "--suite", "smoke", "--arch", "lmu,lmu-fft", "--workload", "forward,stream",
                "--seq-len", "16", "--budget-s", "0.05", "--out", str(out), timeout=300)
    assert r.returncode == 0, r.stderr
    assert "speedup vs lmu" in r.stdout and "lmu-fft" in r.stdout
    from harness.results import load  # the README API path (a re-export)

    df = load(out)
    assert len(df) == 4 and set(df.status) == {"ok"}
    stream = df[df.workload == "stream"].set_index("arch")
    assert (stream.state_bytes > 0).all()
    assert (stream.time_per_token_s * 16 - stream.time_median_s).abs().max() < 1e-12
