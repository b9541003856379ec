"""nox sessions for seqbench.

Torch is installed first from ``SEQBENCH_TORCH`` (default: the version ``asv.conf.json``
pins, the CPU wheel on the reference machine), so a CPU machine never pulls a multi-GB
CUDA build by accident. GPU users name their CUDA index:
``SEQBENCH_TORCH="torch==X --index-url <your CUDA wheel index>"``.

Environments are reused; installs are skipped when nothing they depend on changed (a
stamp of the torch spec, the extras and pyproject.toml), so a second call starts in
seconds.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
from datetime import datetime
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tools.asv_support import pinned_torch  # noqa: E402

nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"  # pip honours the machine's pip config; uv does not
nox.options.sessions = ["tests"]

ROOT = Path(__file__).parent
TORCH_SPEC = os.environ.get("SEQBENCH_TORCH") or pinned_torch()  # asv.conf.json: the one pin


def install(session: nox.Session, *extras: str, also: tuple[str, ...] = ()) -> None:
    """Install torch from TORCH_SPEC, then the project (editable) with ``extras``.

    Skipped when the stamp of everything that decides the install is unchanged.
    """
    key = "\n".join(
        [TORCH_SPEC, ",".join(extras), *also, (ROOT / "pyproject.toml").read_text()]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()
    stamp = Path(session.virtualenv.location) / ".seqbench-install-stamp"
    if stamp.exists() and stamp.read_text() == digest:
        session.log("dependencies unchanged: skipping install")
        return
    session.install(*shlex.split(TORCH_SPEC))
    target = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", target, *also)
    stamp.write_text(digest)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (GPU tests skip cleanly without CUDA): what CI runs."""
    install(session, "test")
    session.run("pytest", *session.posargs)


@nox.session
def quick(session: nox.Session) -> None:
    """The fast lane: every test not marked ``slow`` (none of ``tests/integration/``, no
    real sweep or child process), in under 2 minutes on a 2-core CPU. Before a commit;
    ``tests`` (CI) runs everything."""
    install(session, "test")
    session.run("pytest", "-m", "not slow", *session.posargs)


@nox.session
def coverage(session: nox.Session) -> None:
    """The fast lane under coverage: which modules of the packages the fast tests exercise
    (a module at 0% has no fast test). Cells run in child processes, which are not counted."""
    install(session, "test")
    session.run("coverage", "run", "--source=architectures,workloads,harness", "-m", "pytest",
                "-m", "not slow", *session.posargs)
    session.run("coverage", "report", "--sort=cover")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and format check."""
    session.install("ruff>=0.4")
    session.run("ruff", "check", ".")


@nox.session
def bench(session: nox.Session) -> None:
    """The default sweep on this machine (CUDA when present), then its report.

    Extra arguments go to ``python -m harness run``, e.g. ``nox -s bench -- --arch lmu,lmu-fft``.
    """
    install(session)
    args = list(session.posargs)
    out = ROOT / "results" / "runs" / f"{datetime.now():%Y%m%d-%H%M%S}-bench"
    if "--out" in args[:-1]:  # the user's directory: run into it and report it
        out = Path(args.pop(args.index("--out") + 1))
        args.remove("--out")
    session.run("python", "-m", "harness", "run", "--suite", "bench", "--out", str(out), *args)
    session.run("python", "-m", "harness", "report", str(out))


@nox.session
def profile(session: nox.Session) -> None:
    """Profile every adapter at a short and a long length; print how to open TensorBoard.

    Lengths: SEQBENCH_PROFILE_LENGTHS (default "256,1024"; the sequential lmu needs many
    GB of profiler memory beyond that on CPU). Extra args go to ``harness profile``.
    """
    install(session, "profile")
    lengths = os.environ.get("SEQBENCH_PROFILE_LENGTHS", "256,1024")
    out = ROOT / "results" / "profiles" / f"{datetime.now():%Y%m%d-%H%M%S}-nox"
    session.run("python", "-m", "harness", "profile", "--arch", "all", "--workload", "train",
                "--seq-len", lengths, "--batch", "8", "--active", "1", "--out", str(out),
                *session.posargs)
    session.log(f"TensorBoard: tensorboard --logdir {out} --host 127.0.0.1, then open "
                "http://127.0.0.1:6006 → PYTORCH_PROFILER (its charts need internet); offline: "
                f"{out}/breakdown_*.png, or any *.pt.trace.json in ui.perfetto.dev")


@nox.session
def asv(session: nox.Session) -> None:
    """asv history and an offline dashboard (results/asv-html).

    ``nox -s asv``: new commits of main since the last recorded one (HEAD if none), then
    publish. ``-- run main~10..main``: backfill. ``-- same``: this venv's torch
    (--python=same --set-commit-hash HEAD; GPU/offline). ``-- continuous BASE HEAD``:
    exits 1 on a regression beyond SEQBENCH_ASV_FACTOR (default 1.1).
    ``-- compare BASE HEAD``, ``-- publish``.
    """
    install(session, "asv")
    session.run("python", "-m", "tools.asv_support", *session.posargs,
                env={"SEQBENCH_TORCH": TORCH_SPEC})
