"""The test suite: its folders mirror the packages (``architectures/``, ``workloads/``,
``harness/<concept>/``, ``tools/``), and ``integration/`` holds the process-level tests
(real sweeps through the command line and the runner, Slurm, asv, Chromium, signals), all
marked ``slow`` (``conftest.py``). What the tests share is in ``helpers.py`` and
``conftest.py``; ``fault_adapters.py``, ``fake_kernels.py``, ``old_rules.py`` and
``slurm_cluster.py`` are imported as ``tests.<module>``."""
