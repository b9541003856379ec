"""The server every cell process is forked from, with torch preloaded.

A cell process then starts in tens of milliseconds instead of importing torch itself.
``start_early`` starts the server before the command imports torch: on two cores the two
imports overlap, and a ``run`` starts about 3 s sooner. This module imports no torch.
"""

from __future__ import annotations

import multiprocessing as mp

PRELOAD = ["torch", "architectures", "workloads", "harness.run.worker"]


def context() -> mp.context.BaseContext:
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def start_early() -> None:
    """Start the server now (it lives until this process exits)."""
    from multiprocessing import forkserver

    context()
    forkserver.ensure_running()


def alive(grace_s: float = 0.0) -> bool:
    """Whether this process's server is running (a cell that lost it cannot report).

    ``grace_s``: how long a dying server may take to exit; its cells see their pipes
    close a moment before the server itself is gone."""
    import time
    from multiprocessing import forkserver

    import psutil

    pid = forkserver._forkserver._forkserver_pid  # noqa: SLF001 - no public accessor
    deadline = time.monotonic() + grace_s
    while pid is not None:
        try:  # not psutil's wait(): that would reap it, and multiprocessing waits for it
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return False
        except psutil.Error:
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.02)
    return False
