"""A claim's staleness without a second process: one from another host is alive while its
heartbeat is fresh (claims held by live and dead processes: tests/integration/
test_claims.py)."""

from __future__ import annotations

import json
import time

from harness.store.claims import claim_path
from harness.store.rundir import RunDir


def test_a_claim_from_another_host_is_stale_only_when_not_refreshed(tmp_path, monkeypatch):
    import os

    import harness.store.claims as claims

    store = RunDir(tmp_path).ensure()
    path = claim_path(tmp_path, "x")
    path.parent.mkdir()
    path.write_text(json.dumps({"cell_id": "x", "host": "elsewhere", "pid": 1,
                                "create_time": 0.0}))
    assert store.claim_cell("x") is None  # fresh heartbeat: alive as far as we can tell
    old = time.time() - claims.CLAIM_STALE_S - 5
    os.utime(path, (old, old))
    assert store.claim_cell("x") is not None
