"""Durable state of a replica: committed data and the two-phase commit log."""
