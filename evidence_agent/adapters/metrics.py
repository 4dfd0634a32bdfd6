"""Prometheus metrics of the docking daemon, on a registry of their own, served on loopback only."""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from evidence_agent.errors import ConfigError

NAMESPACE = "evidence_agent"


@dataclass(frozen=True)
class AgentMetrics:
    """The daemon's metrics; the daemon owns one and passes it down (no module-level registry)."""

    registry: CollectorRegistry
    recorders_docked: Gauge
    ingested_bytes: Counter
    backlog_clips: Gauge
    clips_over_deadline: Gauge
    last_successful_store: Gauge
    unknown_devices_seen: Counter
    unidentified_docks: Gauge

    def mark_stored(self) -> None:
        """A clip reached the object store and was verified: now is the last success."""
        self.last_successful_store.set_to_current_time()


def create_metrics(registry: CollectorRegistry | None = None) -> AgentMetrics:
    """Register every metric on `registry` (a new one by default)."""
    reg = CollectorRegistry(auto_describe=True) if registry is None else registry
    return AgentMetrics(
        registry=reg,
        recorders_docked=Gauge(
            "recorders_docked",
            "Recorders docked now (mounted or being ingested).",
            namespace=NAMESPACE,
            registry=reg,
        ),
        ingested_bytes=Counter(
            "ingested_bytes",
            "Bytes of evidence copied into the spool; rate() gives bytes per second.",
            namespace=NAMESPACE,
            registry=reg,
        ),
        backlog_clips=Gauge(
            "backlog_clips",
            "Clips found on docked recorders or in the spool and not yet stored.",
            namespace=NAMESPACE,
            registry=reg,
        ),
        clips_over_deadline=Gauge(
            "clips_over_deadline",
            "Clips catalogued more than deadline.limit_hours (24 h by default) after their "
            "recording ended: the 24-hour rule's breaches, as `evidence-agent status` counts "
            "them (`clips list --late` lists them with their cause).",
            namespace=NAMESPACE,
            registry=reg,
        ),
        last_successful_store=Gauge(
            "last_successful_store_timestamp_seconds",
            "Unix time of the last clip stored and verified in the object store.",
            namespace=NAMESPACE,
            registry=reg,
        ),
        unknown_devices_seen=Counter(
            "unknown_devices_seen",
            "USB storage devices docked that are neither enrolled nor allowlisted (not ingested).",
            namespace=NAMESPACE,
            registry=reg,
        ),
        unidentified_docks=Gauge(
            "unidentified_docks",
            "Docked volumes no recorder can be named for, waiting for an identity file or "
            "`evidence-agent dock identify` (nothing of them read).",
            namespace=NAMESPACE,
            registry=reg,
        ),
    )


class MetricsServer:
    """The HTTP endpoint serving /metrics; `close()` stops it and joins its thread."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def check_loopback(addr: str) -> None:
    """Metrics tell who docked what and when: they are for the local scraper only."""
    if addr == "localhost":
        return
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError as e:
        raise ConfigError(f"metrics address {addr!r} is not an IP address") from e
    if not ip.is_loopback:
        raise ConfigError(
            f"metrics address {addr} is not a loopback address",
            remedy="bind to 127.0.0.1 or ::1 and let a local Prometheus or a reverse proxy scrape it",
        )


def start_metrics_server(
    registry: CollectorRegistry, port: int, addr: str = "127.0.0.1"
) -> MetricsServer:
    """Serve `registry` at http://addr:port/metrics on a daemon thread; port 0 picks a free port."""
    check_loopback(addr)
    try:
        server, thread = start_http_server(port, addr=addr, registry=registry)
    except OSError as e:
        raise ConfigError(
            f"cannot serve metrics on {addr}:{port}: {e}",
            remedy="choose a free port for the metrics endpoint",
        ) from e
    thread.name = "metrics-http"
    return MetricsServer(server, thread)
