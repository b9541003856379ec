"""Running cells: suites (``suites`` + ``suites/*.toml``), planning a sweep (``sweep``),
the scheduler (``runner``), the isolated worker process (``worker``), plugins, and where
cells run (``launchers``). Uses ``harness.measure`` and ``harness.store``; never a
command or the report."""
