"""``from rmi_kv.client import KeyValueClient``: the documented path of the client library."""
from rmi_kv.wire.client import KeyValueClient

__all__ = ["KeyValueClient"]
