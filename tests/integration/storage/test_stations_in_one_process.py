"""Two stations in one process, sharing one store object, each keep what they learn of it to
themselves: the store being away, and the store's self-test passed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evidence_agent.adapters.s3.store import S3ObjectStore
from evidence_agent.services.checkpoint_publishing import publish_checkpoints
from evidence_agent.services.station import Station, open_station
from evidence_agent.services.storage_check import CHECK_CACHE_FILE, require_checked_store
from tests.integration.conftest import StoreFactory, station_settings
from tests.integration.storage.outage import StoreOutage
from tests.services.seaweedfs import SeaweedFS

pytestmark = pytest.mark.s3


def open_two(tmp_path: Path, store: S3ObjectStore) -> tuple[Station, Station]:
    endpoint = store.settings.endpoint
    assert endpoint is not None and store.settings.bucket is not None
    stations = []
    for name in ("st-one", "st-two"):
        settings = station_settings(
            tmp_path / name, name, bucket=store.settings.bucket, endpoint=endpoint
        )
        stations.append(open_station(settings, actor="user:test", store=store))
    return stations[0], stations[1]


@pytest.fixture
def outage(seaweedfs: SeaweedFS) -> Iterator[StoreOutage]:
    with StoreOutage(seaweedfs.s3_port) as proxy:
        yield proxy


def test_one_station_finding_the_store_away_does_not_make_it_away_for_the_other(
    make_store: StoreFactory, outage: StoreOutage, tmp_path: Path
) -> None:
    one, two = open_two(tmp_path, make_store(endpoint=outage.endpoint))
    try:
        # Each station has its first checkpoint (made when its key was) to publish.
        outage.down()
        failed = publish_checkpoints(one)
        assert failed.failed is not None and "cannot connect" in failed.failed
        outage.up()

        # The first station leaves publishing to the retry while the store counts as away ...
        skipped = publish_checkpoints(one)
        assert skipped.published == []
        assert skipped.failed is not None and skipped.failed.endswith("; published later")
        # ... the second found nothing wrong with the same store and publishes at once.
        published = publish_checkpoints(two)
        assert published.failed is None
        assert published.published == ["evidence/checkpoints/st-two/1.note"]
    finally:
        one.close()
        two.close()


def canaries(s3_admin: Any, bucket: str) -> int:
    listing = s3_admin.list_object_versions(Bucket=bucket, Prefix="evidence/canary/")
    return len(listing.get("Versions", []))


def test_a_self_test_passed_for_one_station_is_not_taken_for_the_other(
    make_store: StoreFactory, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    one, two = open_two(tmp_path, make_store())
    try:
        require_checked_store(one)
        assert (one.settings.data_dir / CHECK_CACHE_FILE).exists()
        after_one = canaries(s3_admin, evidence_bucket)
        assert after_one >= 1
        require_checked_store(one)  # remembered by this station: no second self-test
        assert canaries(s3_admin, evidence_bucket) == after_one

        assert not (two.settings.data_dir / CHECK_CACHE_FILE).exists()
        require_checked_store(two)  # the same store object, but this station tests it itself
        assert (two.settings.data_dir / CHECK_CACHE_FILE).exists()
        assert canaries(s3_admin, evidence_bucket) > after_one
    finally:
        one.close()
        two.close()
