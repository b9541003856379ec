"""Build each model configuration of a plan once, before anything runs, so a bad value
(``--set order=0``, ``memory_d=1000000000``) is one line of usage error now instead of a
failed cell later.

The builds run in one process of their own, forked from the cell processes' server, with
at most the per-cell memory cap of address space on top of what the server already holds
and the per-cell time limit: a configuration too large to build fails there (MemoryError,
or a RuntimeError from torch's allocator) and never in the command's own process, and a
configuration that does fit is not allocated in the command's process either.
"""

from __future__ import annotations

import resource
from collections.abc import Sequence
from typing import Any

from harness.errors import UsageError, describe
from harness.store.records import Cell

Config = tuple[str, str, tuple[tuple[str, Any], ...]]  # (arch, preset, config overrides)


def configs_of(cells: Sequence[Cell]) -> list[Config]:
    """The distinct model configurations of ``cells`` (workload options left out)."""
    import architectures

    out: dict[Config, None] = {}
    for c in cells:
        keys = architectures.spec(c.arch).config_keys  # the rest are workload options
        out.setdefault((c.arch, c.preset, tuple((k, v) for k, v in c.overrides if k in keys)))
    return list(out)


def check_configs(cells: Sequence[Cell], *, plugins: Sequence[str] = (),
                  mem_cap_bytes: int = 0, timeout_s: float = 120.0) -> None:
    """Build every configuration of ``cells`` in a separate process (see the module
    docstring). Raises UsageError naming the first configuration that cannot be built
    and why; ``mem_cap_bytes`` 0: 75% of this machine's memory."""
    import psutil

    from harness.run import forkserver
    from harness.run.processes import end_process

    configs = configs_of(cells)
    if not configs:
        return
    cap = mem_cap_bytes or int(0.75 * psutil.virtual_memory().total)
    ctx = forkserver.context()
    theirs, mine = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_build_all, args=(configs, tuple(plugins), cap, mine),
                       daemon=True, name="seqbench-buildcheck")
    proc.start()
    mine.close()
    timed_out, got = False, None
    try:
        if theirs.poll(timeout_s):  # a message, or the end of the pipe (it died)
            got = theirs.recv()
        else:
            timed_out = True
    except (EOFError, OSError):
        pass
    finally:
        end_process(proc, grace_s=0 if timed_out or got is None else 5.0)
        theirs.close()
    if got is None:
        why = (f"took longer than the cell time limit ({timeout_s:g} s)" if timed_out else
               f"ended without an answer (exit code {proc.exitcode}; killed for memory?)")
        raise UsageError(f"building the models of this run {why}; check the --set values")
    if got != "ok":
        index, error = got
        arch, preset, overrides = configs[index]
        raise UsageError(f"{arch} (preset {preset!r}, set {dict(overrides)}): {error}")


def _build_all(configs: list[Config], plugins: tuple[str, ...], cap: int, conn: Any) -> None:
    """In the build process: limit its address space, build each configuration, send
    ``"ok"`` or ``(index, one-line error)``."""
    import gc

    import psutil

    import architectures
    from harness.run import forkserver
    from harness.run.plugins import load_plugins

    forkserver.isolate()  # dies with the server; its process group is killed at the end
    try:
        load_plugins(plugins)
        limit = psutil.Process().memory_info().vms + cap
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard == resource.RLIM_INFINITY or limit < hard:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        for i, (arch, preset, overrides) in enumerate(configs):
            try:
                model = architectures.build(arch, preset=preset, **dict(overrides))
            except Exception as exc:  # noqa: BLE001 - any failure of a constructor is the config's
                why = describe(exc)
                if isinstance(exc, MemoryError):
                    why += f"; a build may use {cap / 2**30:.1f} GiB (the per-cell memory cap)"
                conn.send((i, why))
                return
            del model
            gc.collect()
        conn.send("ok")
    finally:
        conn.close()
