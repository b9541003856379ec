"""seqbench's measurement harness.

The dependency arrows point one way: ``cli`` (one module per command) → ``report`` and
``profile`` → ``run`` → ``measure`` and ``store``; ``errors`` is shared by all. Nothing
below ``cli`` imports a command.
"""
