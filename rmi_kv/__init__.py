"""rmi_kv: a replicated key-value store, two-phase commit over Pyro5.

The face of the package, as ``Pyro5.api`` is for Pyro5::

    import rmi_kv
    with rmi_kv.KeyValueClient(ns_port=9090) as kv: ...
    except rmi_kv.errors.TransactionAborted: ...

The client is loaded on first use, so that importing the protocol core
(``rmi_kv.core``, ``rmi_kv.storage``) never loads Pyro5.
"""
from typing import Any

from rmi_kv import errors

__version__ = "0.1.0"
__all__ = ["KeyValueClient", "errors", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "KeyValueClient":
        from rmi_kv.wire.client import KeyValueClient

        return KeyValueClient
    raise AttributeError(f"module 'rmi_kv' has no attribute {name!r}")
