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
