"""The local object store and the upload queue on real disks: checked bytes only under an address."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from evidence_agent.adapters.local_store import LocalObjectStore
from evidence_agent.catalog.models import Clip, CustodyEntry
from evidence_agent.config import Settings, build_settings
from evidence_agent.errors import IntegrityError, StorageError
from evidence_agent.services.ingest import ingest_volume
from evidence_agent.services.station import Station, open_station
from evidence_agent.services.storing import store_pending
from tests.integration.test_ingest import mounted

AGENT = str(Path(sys.executable).parent / "evidence-agent")


def settings_for(tmp_path: Path) -> Settings:
    return build_settings(
        {"station": {"id": "test-station"}}, {"EVIDENCE_AGENT_DATA_DIR": str(tmp_path / "data")}
    )


def recorder_volume(root: Path, *names_and_bytes: tuple[str, bytes]) -> Path:
    media = root / "DCIM" / "100MEDIA"
    media.mkdir(parents=True)
    for name, data in names_and_bytes:
        (media / name).write_bytes(data)
    return root


def clip_name(seq: int) -> str:
    return f"A123456_100231_2026112010{seq:02d}00_{seq:04d}.MP4"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def clip_state(station: Station, sha256: str) -> str:
    with station.reading() as session:
        return session.exec(select(Clip).where(Clip.sha256 == sha256)).one().state


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def store_cli(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "EVIDENCE_AGENT_DATA_DIR": str(data_dir),
        "EVIDENCE_AGENT__STATION__ID": "test-station",
    }
    env.pop("EVIDENCE_AGENT_CONFIG", None)
    return subprocess.run(
        [AGENT, "store", "--json"], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def later(tmp_path: Path) -> Iterator[Station]:
    """A station opened after the ingest's process ended: it hashed none of the spool copies."""
    st = open_station(settings_for(tmp_path), actor="user:test")
    yield st
    st.close()


def test_corrupt_spool_copy_never_enters_the_store_and_blocks_nothing(tmp_path: Path) -> None:
    good, victim_bytes = os.urandom(300_000), os.urandom(200_000)
    vol = recorder_volume(tmp_path / "vol", (clip_name(1), good), (clip_name(2), victim_bytes))
    victim = sha(victim_bytes)
    first = open_station(settings_for(tmp_path), actor="user:test")
    try:
        ingest_volume(first, vol)  # catalogued in the spool; the store step is still owed
        spooled = first.spool.path_of(victim)
        store_root = first.store.root  # type: ignore[attr-defined]
    finally:
        first.close()
    spooled.chmod(0o600)
    with spooled.open("r+b") as f:
        f.seek(1000)
        f.write(bytes([victim_bytes[1000] ^ 0xFF]))  # one byte flipped on the spool's disk

    # The run that finds it: an integrity failure of that clip, exit 3; the other clip is stored.
    run = store_cli(tmp_path / "data")
    assert run.returncode == 3, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert list(report["integrity_failures"]) == [victim]
    assert "spool copy" in report["integrity_failures"][victim]
    assert len(report["stored"]) == 1
    # Nothing under the victim's address, no partial file anywhere in the store.
    store = LocalObjectStore(store_root)
    assert not store.path_of(victim).exists()
    assert [p.name for p in files_under(store_root / "sha256")] == [sha(good)]

    # Later runs are not blocked by it: the clip waits for its recorder (a warning, exit 1).
    run = store_cli(tmp_path / "data")
    assert run.returncode == 1, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert report["integrity_failures"] == {}
    assert "dock the recorder again" in report["failed"][victim]

    st = open_station(settings_for(tmp_path), actor="user:test")
    try:
        # The bad copy is kept aside for examination, not in the spool and not stored.
        assert not st.spool.path_of(victim).exists()
        (aside,) = st.spool.set_aside_copies(victim)
        assert sha(aside.read_bytes()) != victim
        assert clip_state(st, victim) == "spooled"  # so its recorder is never cleared

        # Another clip docked meanwhile is stored as usual.
        other = os.urandom(100_000)
        ingest_volume(st, recorder_volume(tmp_path / "vol2", (clip_name(3), other)))
        report_other = store_pending(st)
        assert report_other.integrity_failures == {}
        assert clip_state(st, sha(other)) == "stored"

        # Docking the recorder again reads the original anew, and the clip is stored.
        redock = ingest_volume(st, vol)
        assert {c.outcome for c in redock.clips} == {"already_ingested"}
        assert st.spool.path_of(victim).read_bytes() == victim_bytes
        assert store_pending(st).integrity_failures == {}
        assert clip_state(st, victim) == "stored"
        assert st.store.verify(victim).sha256 == victim
        with st.reading() as session:
            again = session.exec(
                select(CustodyEntry).where(CustodyEntry.event_type == "clip.seen_again")
            ).all()
        assert len(again) == 1 and "read again" in json.loads(again[0].entry)["reason"]
    finally:
        st.close()


@pytest.mark.parametrize("same_process", [True, False], ids=["hashed-here", "later-process"])
def test_bad_object_already_under_an_address_is_never_taken_as_stored(
    tmp_path: Path, same_process: bool
) -> None:
    data = os.urandom(250_000)
    digest = sha(data)
    st = open_station(settings_for(tmp_path), actor="user:test")
    try:
        ingest_volume(st, recorder_volume(tmp_path / "vol", (clip_name(1), data)))
        if not same_process:
            st.close()
            st = open_station(settings_for(tmp_path), actor="user:test")
        # What an earlier version left: other bytes under the clip's address.
        poisoned = st.store.path_of(digest)  # type: ignore[attr-defined]
        poisoned.parent.mkdir(parents=True)
        poisoned.write_bytes(data[:-1] + b"\x00")
        poisoned.chmod(0o400)

        report = store_pending(st)
        assert report.integrity_failures == {} and report.failed == {}
        assert clip_state(st, digest) == "stored"
        assert poisoned.read_bytes() == data
        assert st.store.verify(digest).sha256 == digest
        (aside,) = (st.store.root / "damaged").iterdir()  # type: ignore[attr-defined]
        assert aside.read_bytes() == data[:-1] + b"\x00"  # kept for examination
    finally:
        st.close()


def test_source_that_does_not_hash_to_its_address_is_refused(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    source = tmp_path / "spool-copy"
    source.write_bytes(b"bytes that are not the evidence")
    claimed = sha(b"the evidence")
    with pytest.raises(IntegrityError):
        store.put(claimed, source, source.stat().st_size, None)
    assert not store.exists(claimed)
    assert files_under(store.root) == []


@pytest.fixture
def tiny_store(tmp_path: Path) -> Iterator[Path]:
    with mounted(tmp_path / "tiny", "tmpfs", "size=1m", "the full-store test") as mount_point:
        yield mount_point


def test_full_store_leaves_no_partial_object(tmp_path: Path, tiny_store: Path) -> None:
    # The spool is on another file system: the store copies the bytes (no hard link).
    data = os.urandom(3 << 20)
    source = tmp_path / "spool-copy"
    source.write_bytes(data)
    store = LocalObjectStore(tiny_store / "store")
    for _ in range(3):  # every retry, as the upload queue makes them
        with pytest.raises(StorageError) as e:
            store.put(sha(data), source, len(data), None)
        assert "space" in (e.value.remedy or "")
        assert files_under(store.root) == []
    assert source.read_bytes() == data  # the spool keeps the copy
