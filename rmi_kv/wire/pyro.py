"""rmi_kv's Pyro5 settings, and the serpent registration of its errors.

Every process that talks Pyro5 calls ``configure_pyro()``; a server calls it
with ``server=True`` and the values it was configured with. The hardening
of what a server accepts is installed separately, on purpose, by the server
(``rmi_kv.wire.hardening``): a process that only makes calls never needs it.
"""
from __future__ import annotations

from typing import Callable, Optional

from Pyro5 import config as pyro_config
from Pyro5.api import register_dict_to_class

from rmi_kv.config import Limits, Settings, Timeouts
from rmi_kv.errors import ALL_ERRORS, RmiKvError


def configure_pyro(*, server: bool = False, limits: Optional[Limits] = None,
                   max_connections: int = Settings.max_connections,
                   idle_timeout: float = Timeouts.idle_connection) -> None:
    """Apply rmi_kv's Pyro5 settings to this process (idempotent).

    Every process: serpent only; no automatic retries (a retried call that
    timed out would run twice); a message bound a little above the largest
    legal value; rmi_kv's errors rebuilt as their own classes.
    A server (``server``) also: the thread-pool server (a replica calls peers
    that call back), room for ``max_connections``, and ``idle_timeout`` as the
    cutoff of an idle connection. A client's settings leave these alone, so a
    server that also makes calls keeps them.
    """
    limits = limits or Limits()
    pyro_config.SERIALIZER = "serpent"
    pyro_config.MAX_RETRIES = 0
    pyro_config.COMPRESSION = False
    pyro_config.MAX_MESSAGE_SIZE = limits.max_message_bytes()
    pyro_config.SOCK_NODELAY = True
    register_errors()
    if server:
        pyro_config.SERVERTYPE = "thread"
        pyro_config.DETAILED_TRACEBACK = False
        # room above the ConnectionGuard's limit, so the guard decides who is dropped, not the pool
        pyro_config.THREADPOOL_SIZE = max_connections + 64
        pyro_config.THREADPOOL_SIZE_MIN = 8
        pyro_config.POLLTIMEOUT = 0.5
        # the idle-connection cutoff (a guarded daemon sets it per connection); every proxy sets its own timeout
        pyro_config.COMMTIMEOUT = idle_timeout


def register_errors() -> None:
    """Let Pyro5's serializer rebuild every rmi_kv error on the receiving side.

    The serpent class name is the sender's ``module.Class``, so it stays
    ``rmi_kv.errors.<Class>``: part of the wire format.
    """
    for cls in ALL_ERRORS:
        register_dict_to_class(f"{cls.__module__}.{cls.__name__}", _rebuilder(cls))


def _rebuilder(cls: type[RmiKvError]) -> Callable[[str, dict], RmiKvError]:
    def rebuild(_classname: str, data: dict) -> RmiKvError:
        args = data.get("args") or ("",)
        message = args[0] if args and isinstance(args[0], str) else str(args)
        error = cls.__new__(cls)
        Exception.__init__(error, message)
        error.message = message
        attributes = data.get("attributes") or {}
        if isinstance(attributes, dict):
            for name, value in attributes.items():
                if isinstance(name, str) and not name.startswith("__"):  # keeps Pyro5's _pyroTraceback
                    setattr(error, name, value)
        return error

    return rebuild
