"""Test support code: a TCP fault proxy, network-namespace hosts, a remote client agent, checks."""
