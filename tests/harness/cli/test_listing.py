"""``python -m harness list`` in this process: the module entry point exits with the
command's code, a published preset lists only the adapters that express it, and an
unknown preset is one usage line (the same through a child process, with the table:
tests/architectures/test_registry.py)."""

from __future__ import annotations

import json
import runpy
import sys

import pytest

import architectures
from tests.helpers import cli

PUBLISHED = "keras-benchmark"  # a published model's preset: the LMU family only


def test_the_module_entry_point_lists_a_published_presets_adapters(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["harness", "list", "--json", "--preset", PUBLISHED])
    with pytest.raises(SystemExit) as exited:
        runpy.run_module("harness", run_name="__main__")
    assert exited.value.code == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == {"lmu-seq", "lmu-fft", "lmu-conv", "lmu-chunked"}
    for r in rows:
        assert r["preset"] == PUBLISHED
        assert r["params"] == architectures.build(r["name"], preset=PUBLISHED).num_params()
        assert r["stepwise"] == architectures.info(r["name"]).stepwise


def test_an_unknown_preset_is_one_usage_line_naming_the_valid_ones(capsys):
    code, out, err = cli(capsys, "list", "--preset", "huge")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "huge" in err and "tiny" in err
    assert "Traceback" not in err
