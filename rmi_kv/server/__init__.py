"""The processes: a replica (lifecycle, catch-up, maintenance), the name
server, operator commands and a local cluster of child processes."""
