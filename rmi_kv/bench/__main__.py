"""``python -m rmi_kv.bench``."""
import sys

from rmi_kv.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
