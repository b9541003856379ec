"""seqbench's measurement harness: timing, memory, isolated sweeps, results, reports."""
