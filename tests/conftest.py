"""Shared fixtures: devices to test on, CUDA tests skipped cleanly without a GPU, a
one-node Slurm; every test under ``integration/`` marked ``slow`` (helpers that are not
fixtures: ``helpers.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
DEVICES = ["cpu"] + (["cuda"] if HAS_CUDA else [])
INTEGRATION = Path(__file__).resolve().parent / "integration"


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by mark
def pytest_collection_modifyitems(config, items):
    """Process-level tests (``integration/``) are ``slow``: ``-m "not slow"`` is the fast
    lane. Without CUDA, ``gpu`` tests are skipped."""
    for item in items:
        if INTEGRATION in Path(item.path).parents:
            item.add_marker(pytest.mark.slow)
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs CUDA, none present")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture(scope="session")
def slurm():
    """A one-node Slurm for the session (tests/slurm_cluster.py), its SLURM_CONF exported
    so that this process and every command it starts submit to it."""
    import os

    from tests.slurm_cluster import missing, start_cluster

    why = missing()
    if why:
        pytest.skip(why)
    cluster = start_cluster()
    before = os.environ.get("SLURM_CONF")
    os.environ.update(cluster.env)
    try:
        yield cluster
    finally:
        cluster.stop()
        if before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = before
