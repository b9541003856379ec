"""Launchers: where a sweep's cells run, each a ``Launcher`` (``base.py``) with one
``launch(batch)``.

- ``local`` (default, :class:`~harness.run.launchers.local.LocalLauncher`): one machine,
  a pool of worker slots: N CPU workers (``--workers N``) or one per GPU
  (``--devices cuda:0,cuda:1`` or ``all``).
- ``slurm`` (:class:`~harness.run.launchers.slurm.SlurmLauncher`): jobs on a Slurm
  cluster through submitit, each running a slice of the cells with the local launcher and
  writing to the shared store.

Both run exactly the cells that need it (``RunDir.to_run``): cells without a record,
plus, with ``retry_failed``, cells whose latest record is not ``ok``.
"""

from __future__ import annotations

import os

from harness.errors import UsageError, choice
from harness.run.launchers.base import Batch, Launcher

__all__ = ["LAUNCHERS", "Batch", "Launcher", "make_launcher"]

LAUNCHERS = ("local", "slurm")


def make_launcher(name: str, device: str, *, workers: int = 1,
                  devices: list[str] | None = None, threads: int | None = None,
                  config: str | os.PathLike[str] | object | None = None) -> Launcher:
    """The launcher ``name`` with its options checked (nothing is written): ``workers``,
    ``devices`` and ``threads`` for ``local``, ``config`` (a TOML path or a
    ``SlurmConfig``) for ``slurm``."""
    if name not in LAUNCHERS:
        raise choice("launcher", name, LAUNCHERS)
    if name == "slurm" and threads is not None:
        raise UsageError("--threads applies to --launcher local (a Slurm job shares the "
                         "cores Slurm gives it among its workers_per_job)")
    if name == "slurm":
        from harness.run.launchers.slurm import SlurmConfig, SlurmLauncher

        cfg = config if isinstance(config, SlurmConfig) else SlurmConfig.load(config)
        return SlurmLauncher(cfg, device)
    if config is not None:
        raise UsageError("--launcher-config applies to --launcher slurm only")
    from harness.run.launchers.local import LocalLauncher

    return LocalLauncher.for_device(device, workers, devices, threads)
