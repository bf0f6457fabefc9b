"""rmi_kv: a replicated key-value store, two-phase commit over Pyro5."""

__version__ = "0.1.0"
