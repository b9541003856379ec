"""The runner's messages to and from cell processes (``harness.run.messages``): they
survive the pipe, a round keeps the ``rounds.jsonl`` line format stores already hold, and
anything else a cell sends is a harness fault, not the cell's record."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import pickle
import time

import pytest

from harness.errors import HarnessFault
from harness.run.messages import CellRecord, RoundCommand, RoundDone, Stop
from harness.run.processes import CellProc, Processes, RoundFinished
from harness.run.runner import CellRounds
from harness.run.settings import RunSettings
from harness.store.records import Cell, Record, RoundEntry

CELL = Cell.make(arch="lmu", workload="forward", seq_len=8, batch=1)

# round lines as the runner wrote them before these messages existed (the worker's dict
# with the line's cell_id and position): round 0 with its setup, then a later round
OLD_LINES = [
    {"cell_id": CELL.cell_id, "position": 1, "kind": "round", "round": 0,
     "samples": [0.002, 0.001, 0.0015], "contention": [0.0, 0.1, 0.0], "k": 4,
     "warmup_s": 0.05, "stop_reason": "budget", "threads": 2, "wall_s": 1.5,
     "static": {"params": 123, "peak_mem_bytes": 4096, "flops": None, "tokens": 8},
     "started_at": "2025-01-02T03:04:05+00:00"},
    {"cell_id": CELL.cell_id, "position": 0, "kind": "round", "round": 1,
     "samples": [0.0012, 0.0011], "contention": [0.0, 0.0], "k": 4, "warmup_s": 0.01,
     "stop_reason": "ci", "threads": 2, "wall_s": 0.25},
]


def test_every_message_survives_the_pipe():
    rec = Record.for_cell(CELL, "error", "boom")
    for msg in (RoundCommand(3, 12, k=4), RoundCommand(0, 0), Stop(),
                RoundDone(**{k: v for k, v in OLD_LINES[0].items()
                             if k not in ("cell_id", "position", "kind")}),
                CellRecord(rec)):
        assert pickle.loads(pickle.dumps(msg)) == msg


def test_a_round_writes_the_line_it_always_wrote_and_reads_back_as_itself():
    for line in OLD_LINES:
        done = RoundDone.from_entry(line)
        assert {"cell_id": line["cell_id"], "position": line["position"],
                **done.entry()} == line
        back = json.loads(json.dumps({"cell_id": CELL.cell_id, **done.entry()}))
        assert RoundEntry.problem(back) is None and RoundDone.from_entry(back) == done


def test_old_round_lines_resume_into_the_same_record():
    """A store's rounds.jsonl from before: its rounds pool into the record, the setup's
    measurements from round 0, the wall time of both rounds added up."""
    st = CellRounds.resumed(CELL, OLD_LINES)
    assert st.pool.rounds_done == 2 and st.k == 4 and st.threads == 2
    assert st.static == OLD_LINES[0]["static"] and st.warmup_s == 0.05
    assert st.started_at == "2025-01-02T03:04:05+00:00" and st.wall_s == pytest.approx(1.75)
    rec = st.record(RunSettings())
    assert rec.status == "ok" and rec.params == 123 and rec.calls_per_sample == 4
    assert sorted(rec.samples) == sorted(OLD_LINES[0]["samples"] + OLD_LINES[1]["samples"])


def test_a_line_with_only_the_required_fields_takes_the_defaults():
    done = RoundDone.from_entry({"cell_id": CELL.cell_id, "round": 2, "samples": [0.1], "k": 1})
    assert done == RoundDone(round=2, samples=[0.1], k=1)
    assert done.contention == [] and done.static is None and done.wall_s is None


def _idle() -> None:  # pragma: no cover - child
    os.setsid()  # as a cell: the runner kills its process group
    time.sleep(60)


@pytest.fixture
def cell_proc():
    """A runner's Processes with one busy stand-in cell process (forked, idle), and the
    cell's end of its pipe, to speak for it."""
    procs = Processes(RunSettings(), threads=1, workers=1)
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=True)
    proc = ctx.Process(target=_idle, daemon=True)
    proc.start()
    procs.procs[CELL.cell_id] = CellProc(CELL, proc, parent, "cpu", time.monotonic())
    try:
        yield procs, child
    finally:
        procs.kill_all()
    assert proc.exitcode is not None  # killed, and its end reported


@pytest.mark.slow
def test_a_round_from_a_cell_is_a_round_event(cell_proc):
    procs, conn = cell_proc
    done = RoundDone.from_entry(OLD_LINES[1])
    conn.send(done)
    (ev,) = procs.wait(timeout=5)
    assert ev == RoundFinished(CELL, "cpu", done)
    assert not procs.procs[CELL.cell_id].busy  # waiting, warm, for its next command


@pytest.mark.parametrize("sent", [
    {"kind": "round", "round": 0, "samples": [0.1], "k": 1},  # the old dict, not a message
    RoundCommand(0, 0),  # a message, but the runner's
    b"\x80\x04not a pickle",
])
@pytest.mark.slow
def test_what_is_not_a_message_from_a_cell_is_a_harness_fault(cell_proc, sent):
    """A cell that sends anything but a RoundDone or CellRecord (or bytes that do not
    unpickle) stops the run as the harness's fault: nothing recorded against the cell."""
    procs, conn = cell_proc
    if isinstance(sent, bytes):
        conn.send_bytes(sent)
    else:
        conn.send(sent)
    with pytest.raises(HarnessFault) as info:
        procs.wait(timeout=5)
    text = str(info.value)
    assert CELL.cell_id in text and "run the same command again" in text
    assert ("unreadable message" if isinstance(sent, bytes) else "not a message") in text
