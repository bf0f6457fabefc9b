"""The course-style walkthrough (``run_client.py --demo``, ``python -m rmi_kv.demo``)."""
from rmi_kv.demo.walkthrough import main

__all__ = ["main"]
