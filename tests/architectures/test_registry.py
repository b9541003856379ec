"""Bad input is refused with a ValueError naming the bad value and the valid choices;
``python -m harness list`` shows every registered adapter."""

from __future__ import annotations

import json

import pytest
import torch

import architectures
from tests.helpers import harness

NAMES = architectures.available()
STEPWISE = [n for n in NAMES if architectures.info(n).stepwise]
WIDE = {"COLUMNS": "200"}  # a wide terminal: rich truncates cells to fit


def tiny(name: str, **kw):
    return architectures.build(name, preset="tiny", **kw)


def test_unknown_adapter_names_the_choices():
    with pytest.raises(ValueError, match="'no-such-net'") as e:
        architectures.build("no-such-net")
    assert all(n in str(e.value) for n in NAMES)
    with pytest.raises(ValueError, match="no-such-net"):
        architectures.info("no-such-net")


@pytest.mark.parametrize("name", NAMES)
def test_unknown_preset_names_the_choices(name):
    with pytest.raises(ValueError, match="'huge'") as e:
        architectures.build(name, preset="huge")
    assert all(p in str(e.value) for p in ("tiny", "small", "base"))
    with pytest.raises(ValueError, match="'huge'.*tiny"):
        architectures.target_params("huge")


@pytest.mark.parametrize("name", NAMES)
def test_unknown_config_key_names_the_choices(name):
    with pytest.raises(ValueError, match="bogus_key") as e:
        tiny(name, bogus_key=1)
    assert "input_size" in str(e.value) and "output_size" in str(e.value)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [0, -3])
def test_nonpositive_input_size(name, bad):
    with pytest.raises(ValueError, match=rf"input_size.*{bad}"):
        tiny(name, input_size=bad)


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_to_forward(name):
    model = tiny(name)  # input_size 1
    with pytest.raises(ValueError, match=r"rank 3.*\(2, 5\)"):
        model(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"feature size 3.*input_size=1"):
        model(torch.zeros(2, 5, 3))
    with pytest.raises(ValueError, match=r"torch\.int64.*float32"):
        model(torch.zeros(2, 5, 1, dtype=torch.int64))


@pytest.mark.parametrize("name", STEPWISE)
def test_bad_inputs_to_step(name):
    model = tiny(name)
    state = model.init_state(2)
    with pytest.raises(ValueError, match=r"rank 2.*\(2, 1, 1\)"):
        model.step(torch.zeros(2, 1, 1), state)
    with pytest.raises(ValueError, match=r"feature size 4.*input_size=1"):
        model.step(torch.zeros(2, 4), state)
    with pytest.raises(ValueError, match=r"torch\.int32"):
        model.step(torch.zeros(2, 1, dtype=torch.int32), state)


def test_lmu_config_errors_name_the_value():
    with pytest.raises(ValueError, match="order.*0"):
        tiny("lmu", order=0)
    with pytest.raises(ValueError, match="theta.*-1"):
        tiny("lmu", theta=-1.0)
    with pytest.raises(ValueError, match="memory_d.*0"):
        tiny("lmu", memory_d=0)


def test_transformer_config_errors_name_the_value():
    with pytest.raises(ValueError, match="d_model=16.*n_heads=3"):
        tiny("transformer", n_heads=3)


@pytest.mark.slow
def test_harness_list_json_lists_every_adapter():
    proc = harness("list", "--json", "--preset", "tiny", **WIDE)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert isinstance(rows, list)
    assert [r["name"] for r in rows] == NAMES
    for r in rows:
        assert isinstance(r["family"], str) and r["family"]
        assert r["params"] == tiny(r["name"]).num_params()
        assert r["stepwise"] == architectures.info(r["name"]).stepwise


@pytest.mark.slow
def test_harness_list_table_shows_every_adapter():
    proc = harness("list", **WIDE)
    assert proc.returncode == 0, proc.stderr
    for name in NAMES:
        assert name in proc.stdout


@pytest.mark.slow
def test_harness_list_bad_preset_is_a_usage_error():
    proc = harness("list", "--preset", "huge", **WIDE)
    assert proc.returncode == 2
    assert "huge" in proc.stderr and "tiny" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_harness_list_a_published_preset_lists_the_adapters_that_have_it():
    proc = harness("list", "--json", "--preset", "keras-benchmark", **WIDE)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert {r["name"] for r in rows} == {"lmu-seq", "lmu-fft", "lmu-conv", "lmu-chunked"}
    assert {r["params"] for r in rows} == {17_410}

