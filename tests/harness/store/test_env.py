"""The environment a run records (``env.json``, ``harness.store.env``): the device, torch
and the commit it was measured with; a dirty tree told from a clean one and from a tree
without git (git's answers are given here: no child process)."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest
import torch

from harness.store import env


def git_answers(status: str | None, commit: str | None = "abc1234"):
    def git(*args: str) -> str | None:
        return {"status": status, "rev-parse": commit}[args[0]]

    return git


def test_capture_names_the_device_torch_and_the_commit(monkeypatch):
    monkeypatch.setattr(env, "_git", git_answers(""))
    e = env.capture("cpu")
    assert e["git_commit"] == "abc1234" and e["git_dirty"] is False
    assert e["device"] == "cpu" and e["device_name"] == f"cpu: {env.cpu_model()}"
    assert e["cpu_model"] == env.cpu_model() and e["hostname"] == socket.gethostname()
    assert e["torch"] == torch.__version__ and e["torch_threads"] == torch.get_num_threads()
    assert json.loads(json.dumps(e)) == e  # stored as it is


@pytest.mark.parametrize("status, dirty", [(" M harness/cli/run.py", True), ("", False),
                                           (None, None)], ids=["dirty", "clean", "no-git"])
def test_a_dirty_tree_is_told_from_a_clean_one_and_from_no_git(monkeypatch, status, dirty):
    monkeypatch.setattr(env, "_git", git_answers(status, commit=None if status is None else "c"))
    assert env.capture("cpu")["git_dirty"] is dirty


def test_git_missing_or_failing_is_none_not_an_error(monkeypatch):
    def fail(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory: 'git'")

    monkeypatch.setattr(env.subprocess, "run", fail)
    assert env._git("rev-parse", "HEAD") is None

    def refuse(*args, **kwargs):
        raise subprocess.CalledProcessError(128, args[0])

    monkeypatch.setattr(env.subprocess, "run", refuse)
    assert env._git("status", "--porcelain") is None


def test_a_cuda_device_without_cuda_is_labelled_by_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert env.device_name("cuda:0") == env.device_name("cpu") == f"cpu: {env.cpu_model()}"
