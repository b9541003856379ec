"""seqbench's asv suite (see ``asv.conf.json`` and ``sequence_models.py``).

asv imports this directory from the *current* working tree and runs it against the
project as installed at each benchmarked commit, so the suite may only use project APIs
that are stable across history: ``architectures.build``, ``workloads.get(...).prepare``,
``harness.timing.Timer``/``TimingConfig`` and ``harness.memory.MemoryTracker``.
"""
