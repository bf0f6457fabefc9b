"""The course-style walkthrough (``run_client.py --demo``, ``python -m rmi_kv.demo``)."""
from rmi_kv.demo.walkthrough import Demo, main

__all__ = ["Demo", "main"]
