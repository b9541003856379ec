"""What a run leaves on disk: cells and records (``records``), the run directory's
``records.jsonl`` (``rundir``), its plan and worker claims (``state``), the machine's
environment (``env``), and a sweep's progress read from them (``status``). Imports
nothing else of the harness but ``harness.errors``."""
