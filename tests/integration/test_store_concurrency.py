"""Several processes appending to one store at once never interleave or corrupt lines."""

from __future__ import annotations

import json
import multiprocessing as mp

from harness.store.records import Cell, Record
from harness.store.rundir import RunDir

WRITERS = 4
PER_WRITER = 150
SAMPLES = 1500  # ~30 KB per line: far above PIPE_BUF, so O_APPEND alone would not do


def _writer(root: str, w: int, start) -> None:
    store = RunDir(root)
    start.wait()
    for i in range(PER_WRITER):
        cell = Cell.make(arch=f"w{w}", workload="forward", seq_len=i + 1, batch=1)
        # every sample encodes (writer, index) so a spliced line cannot pass as valid
        rec = Record.for_cell(cell, "ok", samples=[w * 1e6 + i + k * 1e-9 for k in range(SAMPLES)],
                              message=f"{w}:{i}")
        store.append(rec)


def test_concurrent_appends_stay_whole_lines(tmp_path):
    ctx = mp.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, start)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    raw = (tmp_path / "records.jsonl").read_bytes()
    assert raw.endswith(b"\n")
    lines = raw.split(b"\n")[:-1]
    assert len(lines) == WRITERS * PER_WRITER
    seen: dict[int, list[int]] = {w: [] for w in range(WRITERS)}
    for line in lines:
        d = json.loads(line)  # raises on any interleaved or torn line
        w, i = map(int, d["message"].split(":"))
        assert d["arch"] == f"w{w}" and d["seq_len"] == i + 1
        assert len(d["samples"]) == SAMPLES
        assert all(int(s) == w * 1e6 + i for s in d["samples"])
        seen[w].append(i)
    # each writer's records all present, once, in the order it wrote them
    assert all(seen[w] == list(range(PER_WRITER)) for w in range(WRITERS))
    assert len(RunDir(tmp_path).latest_by_cell()) == WRITERS * PER_WRITER
