#!/usr/bin/env python3
"""Start-up script; see README.md. The code lives in rmi_kv/server/nameserver.py."""
import sys

from rmi_kv.server.nameserver import main

if __name__ == "__main__":
    sys.exit(main())
