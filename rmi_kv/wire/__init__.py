"""The Pyro5 layer, and the only place Pyro5 is imported: configuration,
hardening, TLS, naming, peer links, the servant and the client."""
