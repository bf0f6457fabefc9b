"""The protocol core: two-phase commit, locks, recovery and batching, free of
network code (no Pyro5), so it is tested with plain objects."""
