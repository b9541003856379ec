"""What a run leaves on disk: cells, records and round lines (``records``), the run
directory and every file in it (``rundir``), who measures what (``claims``: cell claims
and worker leases), writing files whole (``files``), the machine's environment (``env``),
runs loaded into a DataFrame (``load``) and a sweep's progress (``status``). Imports
nothing else of the harness but ``harness.errors`` and, in ``load``, the headline rule
(``harness.measure.headline``, which imports nothing of the package)."""
