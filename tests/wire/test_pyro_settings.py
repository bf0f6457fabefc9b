"""Where Pyro5 is configured: only the wire layer loads it, a client gets a
client's settings, a server the values it was given. Each check runs in a
fresh interpreter, since Pyro5's settings and patches are per process."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import serpent
from Pyro5.serializers import serializers

from rmi_kv.errors import TransactionAborted
from rmi_kv.wire.pyro import configure_pyro

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str) -> dict:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_core_storage_config_and_errors_load_no_pyro5_or_serpent():
    loaded = run_python("""
        import importlib, json, pkgutil, sys
        import rmi_kv.config, rmi_kv.errors, rmi_kv.core, rmi_kv.storage
        for package in (rmi_kv.core, rmi_kv.storage):
            for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
                importlib.import_module(module.name)
        print(json.dumps({"modules": sorted(name for name in sys.modules
                                            if name.split(".")[0] in ("Pyro5", "serpent"))}))
    """)
    assert loaded["modules"] == []


def test_a_client_gets_no_hardening_and_a_server_keeps_its_settings():
    found = run_python("""
        import json
        from Pyro5 import config, protocol
        from rmi_kv.wire.client import KeyValueClient
        from rmi_kv.wire.hardening import refuse_unsafe_messages
        from rmi_kv.wire.pyro import configure_pyro
        pristine = protocol.ReceivingMessage.__init__
        client = KeyValueClient("127.0.0.1", 9, replica="replica1", timeout=1.0)
        found = {"client_patched": protocol.ReceivingMessage.__init__ is not pristine,
                 "client_serializer": config.SERIALIZER, "client_retries": config.MAX_RETRIES,
                 "client_commtimeout": config.COMMTIMEOUT}
        configure_pyro(server=True, max_connections=50, idle_timeout=42.0)
        refuse_unsafe_messages()
        configure_pyro()  # a server that also makes calls
        found.update(server_patched=protocol.ReceivingMessage.__init__ is not pristine,
                     server_commtimeout=config.COMMTIMEOUT, server_pool=config.THREADPOOL_SIZE)
        print(json.dumps(found))
    """)
    assert found == {"client_patched": False, "client_serializer": "serpent", "client_retries": 0,
                     "client_commtimeout": 0.0,
                     "server_patched": True, "server_commtimeout": 42.0, "server_pool": 50 + 64}


def test_errors_travel_under_their_rmi_kv_errors_names():
    configure_pyro()
    serializer = serializers["serpent"]
    wire = serializer.dumps(TransactionAborted("no", replicas={"replica2": "voted no"}))
    assert serpent.loads(wire)["__class__"] == "rmi_kv.errors.TransactionAborted"
    rebuilt = serializer.loads(wire)
    assert type(rebuilt) is TransactionAborted and rebuilt.replicas == {"replica2": "voted no"}
