"""One run of the web view: its cluster (started here, or attached), the view, the controls, the server."""
from __future__ import annotations

import socket
import sys
from typing import Any, Optional

from rmi_kv.server.cluster import LocalCluster
from rmi_kv.web.app import make_app
from rmi_kv.web.controls import Controls
from rmi_kv.web.view import ClusterView
from rmi_kv.wire.client import KeyValueClient

#: seconds the server waits for open pages to go when it stops
GRACEFUL = 2.0


class WebServer:
    """The view of one cluster, stopped (with the cluster, when it was started here) on leaving."""

    def __init__(self, view: ClusterView, title: str, controls: Optional[Controls] = None,
                 cluster: Optional[LocalCluster] = None) -> None:
        self.view = view
        self.title = title
        self.controls = controls
        self.cluster = cluster

    @classmethod
    def embedded(cls, replicas: int, *, failover: str = "on") -> "WebServer":
        """Start a name server and ``replicas`` replicas on 127.0.0.1 (as the demo does), with controls."""
        cluster = LocalCluster(replicas, replica_args=["--failover", failover])
        print(f"starting a name server and {replicas} replicas on 127.0.0.1 (failover {failover}; data in "
              f"{cluster.data_dir}, removed at the end)", file=sys.stderr, flush=True)
        cluster.start()
        try:
            def connect(timeout: float, replica: Optional[str] = None) -> KeyValueClient:
                return cluster.client(replica, timeout=timeout)

            view = ClusterView(connect, lambda: list(cluster.names))
            controls = Controls(cluster, view.say)
            view.process_state = controls.process_state
            return cls(view.start(), f"the embedded cluster (name server at {cluster.ns_host}:{cluster.ns_port})",
                       controls, cluster)
        except BaseException:
            cluster.stop()
            raise

    @classmethod
    def attached(cls, ns_host: str, ns_port: int, tls_dir: Optional[str] = None) -> "WebServer":
        """Show the cluster whose name server is at ``ns_host:ns_port``, without controls."""
        def connect(timeout: float, replica: Optional[str] = None) -> KeyValueClient:
            return KeyValueClient(ns_host, ns_port, replica=replica, timeout=timeout, tls_dir=tls_dir)

        lookup = connect(5.0)
        lookup.replicas(refresh=True)  # a clear error now when no name server answers there

        def names() -> list[str]:
            return sorted(lookup.replicas(refresh=True))

        return cls(ClusterView(connect, names).start(), f"the cluster at {ns_host}:{ns_port}")

    def app(self, stopping: Any = lambda: False) -> Any:
        return make_app(self.view, self.controls, title=self.title, stopping=stopping)

    def serve(self, sock: socket.socket, *, tls_dir: Optional[str] = None) -> None:
        """Serve the page on ``sock`` until Ctrl-C or SIGTERM."""
        import uvicorn

        ssl: dict = {}
        if tls_dir:
            from rmi_kv.wire.tls import MEMBER, certificate_files

            certificate, key, _authority = certificate_files(tls_dir, MEMBER)
            ssl = {"ssl_certfile": str(certificate), "ssl_keyfile": str(key)}
        server: Optional[uvicorn.Server] = None
        config = uvicorn.Config(self.app(lambda: server is not None and server.should_exit), log_config=None,
                                access_log=False, lifespan="off", timeout_graceful_shutdown=GRACEFUL, **ssl)
        server = uvicorn.Server(config)
        server.run(sockets=[sock])

    def __enter__(self) -> "WebServer":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.view.stop()
        if self.controls is not None:
            self.controls.close()
        if self.cluster is not None:
            self.cluster.stop()
            print(f"stopped the embedded cluster and removed {self.cluster.data_dir}", file=sys.stderr, flush=True)
