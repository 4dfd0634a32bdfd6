"""The metrics endpoint, scraped over HTTP on loopback, on a registry of its own."""

from __future__ import annotations

import threading
import urllib.request

import pytest
from prometheus_client import REGISTRY

from evidence_agent.adapters.metrics import create_metrics, start_metrics_server
from evidence_agent.errors import ConfigError


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        body: bytes = response.read()
    return body.decode()


def test_metrics_are_served_on_loopback() -> None:
    metrics = create_metrics()
    metrics.recorders_docked.set(3)
    metrics.ingested_bytes.inc(1_048_576)
    metrics.backlog_clips.set(12)
    metrics.clips_over_deadline.set(1)
    metrics.last_successful_store.set(1_700_000_000)
    metrics.unknown_devices_seen.inc()
    before = set(threading.enumerate())

    server = start_metrics_server(metrics.registry, 0)
    try:
        assert server.address[0] == "127.0.0.1"
        text = scrape(server.port)
    finally:
        server.close()

    assert "evidence_agent_recorders_docked 3.0" in text
    assert "evidence_agent_ingested_bytes_total 1.048576e+06" in text
    assert "evidence_agent_backlog_clips 12.0" in text
    assert "evidence_agent_clips_over_deadline 1.0" in text
    assert "evidence_agent_last_successful_store_timestamp_seconds 1.7e+09" in text
    assert "evidence_agent_unknown_devices_seen_total 1.0" in text
    assert "# TYPE evidence_agent_ingested_bytes_total counter" in text
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not leaked


def test_each_metrics_object_has_its_own_registry() -> None:
    a, b = create_metrics(), create_metrics()  # would raise "Duplicated timeseries" if shared
    a.unknown_devices_seen.inc(5)
    assert b.registry.get_sample_value("evidence_agent_unknown_devices_seen_total") == 0.0
    assert REGISTRY.get_sample_value("evidence_agent_unknown_devices_seen_total") is None


def test_mark_stored_sets_now() -> None:
    metrics = create_metrics()
    metrics.mark_stored()
    value = metrics.registry.get_sample_value(
        "evidence_agent_last_successful_store_timestamp_seconds"
    )
    assert value is not None and value > 1_700_000_000


@pytest.mark.parametrize("addr", ["0.0.0.0", "192.168.1.10", "::", "example.org"])
def test_non_loopback_addresses_are_refused(addr: str) -> None:
    with pytest.raises(ConfigError):
        start_metrics_server(create_metrics().registry, 0, addr=addr)
