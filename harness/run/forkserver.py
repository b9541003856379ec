"""The server every cell process is forked from, with torch preloaded.

A cell process then starts in tens of milliseconds instead of importing torch itself.
``start_early`` starts the server before the command imports torch: on two cores the two
imports overlap, and a ``run`` starts about 3 s sooner. This module imports no torch.

Every process forked from it (a ``run``'s cells, a ``profile``'s) calls :func:`isolate`
first, and its parent waits for it with :func:`join`, which a stopped server cannot hang.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import time

PRELOAD = ["torch", "architectures", "workloads", "harness.run.worker"]
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# A working server reports a child's death within milliseconds (it waits on SIGCHLD); a
# child dead and unreported this long means the server is stopped (SIGSTOP) or hung.
REPORT_S = 1.0


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
    import psutil

    pid = _pid()
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


def _pid() -> int | None:
    from multiprocessing import forkserver

    return forkserver._forkserver._forkserver_pid  # noqa: SLF001 - no public accessor


def kill() -> None:
    """Kill this process's server, even a stopped one (SIGKILL ends a stopped process).

    It holds the pipes that report its children's exits: dead, it closes them, and each
    child not yet reported reads as exit code 255 (``alive()`` is then False). The next
    process started from this context starts a new server."""
    pid = _pid()
    if pid is not None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def join(proc: mp.process.BaseProcess, timeout_s: float) -> None:
    """``proc.join(timeout_s)`` that a stuck server cannot hold up for ever.

    A process forked from the server is known to have ended only when the server reports
    it. A stopped (SIGSTOP) or hung server does not, and multiprocessing's exit handler
    joins every child whose end it has not heard of without a timeout: the command would
    hang after its records are written. So a ``proc`` that is dead (a zombie the server does
    not reap) but unreported for ``REPORT_S`` has its server killed, which reports it."""
    import psutil

    deadline = time.monotonic() + timeout_s
    dead_since: float | None = None
    while proc.exitcode is None and proc.pid is not None:
        now = time.monotonic()
        if now >= deadline:
            return
        try:
            dead = psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE
        except psutil.Error:
            dead = True
        if dead and dead_since is None:
            dead_since = now
        if dead_since is not None and now - dead_since >= REPORT_S:
            kill()
            proc.join(timeout=max(REPORT_S, deadline - now))
            return
        proc.join(timeout=min(0.05, deadline - now))


def isolate() -> None:
    """First thing in a process forked from the server: a session of its own (the parent
    can kill its whole process group, whatever it started included) and death with the
    server (:func:`die_with_parent`)."""
    parent = os.getppid()
    os.setsid()
    die_with_parent(parent)


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent (the forkserver, which exits
    with the runner) dies: a cell in its own session must not outlive a killed runner, its
    timeout and memory cap no longer enforced. Linux only (prctl PR_SET_PDEATHSIG); the
    runner's pipe is the other watch (a waiting cell ends on its EOF)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    # The forkserver ends when the runner's end of its "alive" pipe closes, but it hands a
    # copy of that end (and of the resource tracker's pipe) to every child it forks: a
    # cell holding them keeps the server, and so itself, alive after the runner is
    # killed. A cell starts no processes through them, so it lets them go.
    from multiprocessing import forkserver, resource_tracker

    for holder, attr in ((forkserver._forkserver, "_forkserver_alive_fd"),
                         (resource_tracker._resource_tracker, "_fd")):
        fd = getattr(holder, attr, None)
        if isinstance(fd, int):
            try:
                os.close(fd)
            except OSError:
                pass
            setattr(holder, attr, None)
