"""The course-style walkthrough (``run_client.py --demo``, ``python -m rmi_kv.demo``).

``runner`` is its command line and embedded cluster, ``walkthrough`` the
``Demo`` that runs the steps, one module each (``step1_cluster`` ...
``step10_summary``); what they show is built by ``rmi_kv.cli.render``, as in
the console.
"""
from rmi_kv.demo.runner import main
from rmi_kv.demo.walkthrough import Demo

__all__ = ["Demo", "main"]
