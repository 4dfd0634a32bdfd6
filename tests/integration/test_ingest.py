"""Ingest of real recorder volumes (ffmpeg-generated clips, real files, real disks)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import mmap
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3
from sqlmodel import select

from evidence_agent.adapters.pyav import PyAVProber
from evidence_agent.catalog.models import Clip, ClipSource, CustodyEntry, DockSession
from evidence_agent.config import Settings, build_settings
from evidence_agent.custody import canonical
from evidence_agent.custody import events as custody_events
from evidence_agent.domain.media import MediaInfo
from evidence_agent.errors import ExitCode, InputError, StorageError
from evidence_agent.io.copying import FileWriter
from evidence_agent.io.spool import Spool
from evidence_agent.io.volume_reader import LocalVolume, VolumeGoneError
from evidence_agent.services.demo_recorder import DemoVolume, generate_clip, make_demo_recorder
from evidence_agent.services.ingest import ingest_volume
from evidence_agent.services.ingest_report import IngestReport
from evidence_agent.services.station import Station, open_station
from evidence_agent.services.storing import store_pending
from tests.docking_gates import gate_spool
from tests.support import service_missing

START = datetime(2026, 11, 20, 1, 0, 0, tzinfo=UTC)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> DemoVolume:
    if shutil.which("ffmpeg") is None:
        service_missing("ffmpeg is not installed")
    return make_demo_recorder(tmp_path_factory.mktemp("template") / "vol", start=START)


@pytest.fixture
def volume(demo_template: DemoVolume, tmp_path: Path) -> Path:
    target = tmp_path / "volume"
    shutil.copytree(demo_template.root, target)
    return target


def make_settings(tmp_path: Path, **paths: str) -> Settings:
    return build_settings(
        {"station": {"id": "test-station"}, "paths": paths},
        {"EVIDENCE_AGENT_DATA_DIR": str(tmp_path / "data")},
    )


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    st = open_station(make_settings(tmp_path), actor="user:test")
    yield st
    st.close()


def clips(station: Station) -> list[Clip]:
    with station.reading() as session:
        return list(session.exec(select(Clip)))


def event_types(station: Station) -> list[str]:
    with station.reading() as session:
        return [e.event_type for e in session.exec(select(CustodyEntry).order_by(CustodyEntry.seq))]


def events(station: Station, event_type: str) -> list[dict[str, Any]]:
    with station.reading() as session:
        rows = session.exec(select(CustodyEntry).where(CustodyEntry.event_type == event_type))
        return [json.loads(e.entry) for e in rows]


def test_spool_blake3_is_the_published_one(tmp_path: Path) -> None:
    """The published BLAKE3 digests of the empty input and of "abc" (as `b3sum` prints them): the
    spool's hash is standard BLAKE3, which any implementation can check."""
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "empty").write_bytes(b"")
    (vol / "abc").write_bytes(b"abc")
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    assert spool.copy_in(LocalVolume(vol), b"empty").blake3 == (
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    )
    assert spool.copy_in(LocalVolume(vol), b"abc").blake3 == (
        "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
    )


def test_demo_volume_is_ingested_hashed_tagged_and_stored(
    station: Station, volume: Path, demo_template: DemoVolume
) -> None:
    report = ingest_volume(station, volume)
    stored = store_pending(station)

    originals = {str(f.path.relative_to(demo_template.root)): f for f in demo_template.media}
    by_path = {c.source_path: c for c in clips(station)}
    assert set(by_path) == set(originals)
    ingest_events = {e["subject"]["id"]: e for e in events(station, "clip.ingested")}
    for rel, clip in by_path.items():
        assert clip.sha256 == sha256_of(volume / rel)
        # BLAKE3 of the same read, which retrievals check; fixed by the ingest event too
        assert clip.blake3 == blake3((volume / rel).read_bytes()).hexdigest()
        assert ingest_events[clip.id]["data"]["blake3"] == clip.blake3
        assert clip.state == "stored"
        assert station.store.verify(clip.sha256).sha256 == clip.sha256
    assert len(stored.stored) == len(originals)

    corrupt = by_path[str(demo_template.corrupt.path.relative_to(demo_template.root))]
    assert "unreadable_media" in json.loads(corrupt.flags)
    important = by_path[str(demo_template.important.path.relative_to(demo_template.root))]
    assert important.important and important.retention_class == "important"
    video = by_path[str(demo_template.good_videos[0].path.relative_to(demo_template.root))]
    assert video.video_codec == "h264" and video.audio_codec == "aac"
    assert video.recorded_start == demo_template.good_videos[0].start
    assert video.recorded_end is not None and video.recorded_end > video.recorded_start
    assert video.time_source == "filename"
    assert json.loads(video.flags) == ["late"]  # recorded two days before this test docks it
    assert (
        video.officer_id is not None and video.unit_id is not None and video.recorder_id is not None
    )

    not_ingested = {n.source_path: n.reason for n in report.not_ingested}
    assert not_ingested == {"RECORDER.JSON": "identity_file", "SYSTEM/LOG.TXT": "not_media"}
    assert report.exit_code == ExitCode.WARNING  # flagged clips need a person's attention
    types = event_types(station)
    assert types.count("clip.ingested") == len(originals)
    assert types.count("clip.stored") == len(originals)
    assert types.count("file.not_ingested") == 2
    assert station.spool.pending() == []  # reclaimed after verified store


def test_originals_are_not_modified(station: Station, volume: Path) -> None:
    before = {p: (p.stat().st_mtime_ns, sha256_of(p)) for p in volume.rglob("*") if p.is_file()}
    ingest_volume(station, volume)
    after = {p: (p.stat().st_mtime_ns, sha256_of(p)) for p in volume.rglob("*") if p.is_file()}
    assert before == after


def test_redock_reads_nothing_again_and_makes_no_second_clip(
    station: Station, volume: Path
) -> None:
    first = ingest_volume(station, volume)
    second = ingest_volume(station, volume)
    assert len(clips(station)) == len(first.clips)
    assert {c.outcome for c in second.clips} == {"already_ingested"}
    assert {c.clip_id for c in second.clips} == {c.clip_id for c in first.clips}


def test_same_content_under_another_name_is_a_duplicate_not_a_clip(
    station: Station, volume: Path, tmp_path: Path
) -> None:
    ingest_volume(station, volume)
    other = tmp_path / "other"
    other.mkdir()
    src = next((volume / "DCIM" / "100MEDIA").glob("*_0001.MP4"))
    shutil.copy(src, other / "A123456_100231_20261120090000_0042.MP4")
    report = ingest_volume(station, other, recorder_serial="A123456")
    assert [c.outcome for c in report.clips] == ["duplicate"]
    assert len(clips(station)) == 6
    assert "clip.seen_again" in event_types(station)


def test_dock_events_are_encoded_by_the_fast_path(
    station: Station, volume: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every event of a dock and its store (ingest, files not ingested, a duplicate, the store)
    is written in plain strings: none falls back to the slower reference encoder."""

    def reference(*args: Any) -> Any:
        raise AssertionError("a custody event was encoded by the reference implementation")

    monkeypatch.setattr(custody_events, "_document", reference)
    monkeypatch.setattr(canonical, "_reference_canonical_json", reference)
    shutil.copy(next((volume / "DCIM" / "100MEDIA").glob("*_0001.MP4")), volume / "again.MP4")
    report = ingest_volume(station, volume)
    store_pending(station)
    assert {"new", "duplicate"} <= {c.outcome for c in report.clips}
    assert {"file.not_ingested", "clip.seen_again", "clip.stored"} <= set(event_types(station))


def test_zero_byte_symlink_fifo_and_device_are_reported_not_followed(
    station: Station, volume: Path, tmp_path: Path
) -> None:
    media = volume / "DCIM" / "100MEDIA"
    outside = tmp_path / "outside_secret.mp4"
    outside.write_bytes(b"not evidence of this recorder")
    (media / "A123456_100231_20261120100000_0100.MP4").write_bytes(b"")
    (media / "A123456_100231_20261120100000_0101.MP4").symlink_to(outside)
    (volume / "escape").symlink_to(tmp_path)
    os.mkfifo(media / "A123456_100231_20261120100000_0102.MP4")
    os.mknod(
        media / "A123456_100231_20261120100000_0103.MP4", stat.S_IFCHR | 0o600, os.makedev(1, 3)
    )

    done: list[object] = []
    worker = threading.Thread(target=lambda: done.append(ingest_volume(station, volume)))
    worker.start()
    worker.join(timeout=60)
    assert done, "ingest blocked (a FIFO must never be opened)"
    report = done[0]
    reasons = {n.source_path: n.reason for n in report.not_ingested}  # type: ignore[attr-defined]
    assert reasons["DCIM/100MEDIA/A123456_100231_20261120100000_0100.MP4"] == "empty"
    assert reasons["DCIM/100MEDIA/A123456_100231_20261120100000_0101.MP4"] == "symlink"
    assert reasons["escape"] == "symlink"
    assert reasons["DCIM/100MEDIA/A123456_100231_20261120100000_0102.MP4"] == "special_file"
    assert reasons["DCIM/100MEDIA/A123456_100231_20261120100000_0103.MP4"] == "special_file"
    assert all(c.sha256 != sha256_of(outside) for c in clips(station))
    assert len(clips(station)) == 6
    assert report.exit_code == ExitCode.WARNING  # type: ignore[attr-defined]


def test_odd_names_spaces_non_utf8_and_very_long(station: Station, tmp_path: Path) -> None:
    vol = tmp_path / "odd"
    vol.mkdir()
    names = [
        b"clip with spaces.mp4",
        b"\xff\xfe\xb2not-utf8.mp4",
        b"\xe6\x89\xa7\xe6\xb3\x95\xe8\xae\xb0\xe5\xbd\x95.mp4",  # 执法记录
        b"L" * 251 + b".mp4",  # 255 bytes: the longest name most file systems allow
    ]
    for i, name in enumerate(names):
        generate_clip(
            Path(os.fsdecode(bytes(vol) + b"/" + name)),
            seconds=1,
            creation_time=START + timedelta(minutes=i),
        )
    report = ingest_volume(station, vol, recorder_serial="B765432")
    assert len(report.clips) == 4
    rows = clips(station)
    assert sorted(c.source_path_bytes for c in rows) == sorted(names)
    for c in rows:
        assert c.sha256 == sha256_of(Path(os.fsdecode(bytes(vol) + b"/" + c.source_path_bytes)))
    shown = {c.source_path for c in rows}
    assert "\\xff\\xfe\\xb2not-utf8.mp4" in shown and "执法记录.mp4" in shown
    # Time from the container when the name has none.
    assert all(c.time_source == "container" for c in rows)


def test_volume_without_identity_or_serial_is_refused_with_remedy(
    station: Station, tmp_path: Path
) -> None:
    vol = tmp_path / "anon"
    vol.mkdir()
    generate_clip(vol / "video.mp4", seconds=1, creation_time=START)
    with pytest.raises(InputError) as e:
        ingest_volume(station, vol)
    assert "--recorder" in (e.value.remedy or "")
    assert clips(station) == []


def test_officer_from_assignment_and_mismatch_flagged(station: Station, volume: Path) -> None:
    from evidence_agent.catalog.models import Officer, Recorder, RecorderAssignment

    with station.transaction() as session:
        recorder = Recorder(serial="A123456", enrolled=True)
        officer = Officer(badge="200001", name="Assigned Officer")
        session.add(recorder)
        session.add(officer)
        session.flush()
        assert recorder.id is not None and officer.id is not None
        session.add(
            RecorderAssignment(
                recorder_id=recorder.id,
                officer_id=officer.id,
                start=START - timedelta(days=1),
                actor="user:test",
            )
        )
    ingest_volume(station, volume)
    with station.reading() as session:
        rows = list(session.exec(select(Clip, Officer).where(Clip.officer_id == Officer.id)))
    assert rows and all(o.badge == "200001" for _, o in rows)
    assert all("officer_mismatch" in json.loads(c.flags) for c, _ in rows)


def test_file_changing_during_copy_is_flagged(station: Station, tmp_path: Path) -> None:
    vol = tmp_path / "growing"
    vol.mkdir()
    target = vol / "A123456_100231_20261120100000_0001.MP4"
    target.write_bytes(os.urandom(1 << 20) * 256)  # 256 MiB
    spool = Spool(tmp_path / "spool", chunk_bytes=64 * 1024)
    spool.prepare()

    def grow() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            # Once bytes reach the spool the copy has taken the file's size: grow it after.
            if any(p.stat().st_size for p in spool.incoming.iterdir()):
                with target.open("ab") as f:
                    f.write(b"appended while the copy ran")
                return
            time.sleep(0.001)

    grower = threading.Thread(target=grow)
    grower.start()
    result = spool.copy_in(LocalVolume(vol), target.name.encode())
    grower.join()
    assert result.changed_during_copy


# Around the block and chunk boundaries, where direct I/O turns to the cache for the tail.
EDGE_SIZES = [0, 1, 4095, 4096, 4097, 65535, 65536, 65537, 3 * 65536 + 123, (5 << 20) + 1]


def copy_every_edge_size(spool: Spool, vol: Path) -> None:
    spool.prepare()
    for size in EDGE_SIZES:
        data = os.urandom(size)
        (vol / f"f{size}").write_bytes(data)
        copied = spool.copy_in(LocalVolume(vol), f"f{size}".encode())
        assert copied.sha256 == hashlib.sha256(data).hexdigest()
        assert copied.blake3 == blake3(data).hexdigest()
        assert copied.size == size and not copied.changed_during_copy
        assert copied.path.read_bytes() == data
    assert list(spool.incoming.iterdir()) == []


@pytest.mark.parametrize("direct_io", [True, False], ids=["direct", "cached"])
def test_copy_is_exact_at_every_block_and_chunk_boundary(tmp_path: Path, direct_io: bool) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    copy_every_edge_size(Spool(tmp_path / "spool", chunk_bytes=64 * 1024, direct_io=direct_io), vol)


def test_the_spool_disk_takes_direct_io(tmp_path: Path) -> None:
    """The premise of the "direct" case above: the test disk's file system offers direct I/O."""
    fd = os.open(tmp_path / "probe", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        assert FileWriter(fd).direct
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT
    finally:
        os.close(fd)


def test_bytes_from_unaligned_memory_are_still_written_directly(tmp_path: Path) -> None:
    """A network stream's bytes lie anywhere in memory: the writer writes them directly from an
    aligned copy of its own, not through the page cache, and the file is exact."""
    chunks = [os.urandom(256 * 1024) for _ in range(3)] + [os.urandom(1000)]
    path = tmp_path / "copy"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        writer = FileWriter(fd)
        for chunk in chunks[:3]:
            writer(memoryview(chunk))
            assert writer.direct  # whole blocks, from the bounce buffer
        writer(memoryview(chunks[3]))  # the ragged end goes through the cache
        assert not writer.direct
        os.fsync(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(chunks)


@contextlib.contextmanager
def mounted(mount_point: Path, fs_type: str, options: str, purpose: str) -> Iterator[Path]:
    mount_point.mkdir()
    proc = subprocess.run(
        ["mount", "-t", fs_type, "-o", options, fs_type, str(mount_point)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        service_missing(f"cannot mount a {fs_type} for {purpose}: {proc.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_file_system_without_direct_io_is_copied_through_the_cache(tmp_path: Path) -> None:
    with mounted(tmp_path / "ramfs", "ramfs", "mode=0755", "the cached-copy test") as ramfs:
        probe = os.open(ramfs / "probe", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            with pytest.raises(OSError):  # the premise: ramfs has no direct I/O
                fcntl.fcntl(probe, fcntl.F_SETFL, fcntl.fcntl(probe, fcntl.F_GETFL) | os.O_DIRECT)
        finally:
            os.close(probe)
        vol = ramfs / "vol"
        vol.mkdir()
        copy_every_edge_size(Spool(ramfs / "spool", chunk_bytes=64 * 1024), vol)


@pytest.fixture
def tiny_spool(tmp_path: Path) -> Iterator[Path]:
    with mounted(tmp_path / "tiny", "tmpfs", "size=1m", "the full-disk test") as mount_point:
        yield mount_point


def test_full_spool_mid_copy_leaves_nothing_and_marks_nothing(
    tmp_path: Path, tiny_spool: Path
) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "A123456_100231_20261120100000_0001.MP4").write_bytes(os.urandom(3 << 20))
    settings = make_settings(tmp_path, spool_dir=str(tiny_spool / "spool"))
    st = open_station(settings, actor="user:test")
    try:
        with pytest.raises(StorageError) as e:
            ingest_volume(st, vol)
        assert "full" in e.value.message and e.value.remedy
        assert list((tiny_spool / "spool" / ".incoming").iterdir()) == []
        assert st.spool.pending() == []
        assert clips(st) == []
        with st.reading() as session:
            dock = session.exec(select(DockSession)).one()
        assert dock.state == "failed"
    finally:
        st.close()
    # Original untouched: the same volume ingests fine once there is room.
    roomy = open_station(make_settings(tmp_path / "second"), actor="user:test")
    try:
        assert len(ingest_volume(roomy, vol).clips) == 1
    finally:
        roomy.close()


def test_spool_start_removes_only_partials_of_dead_processes(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = spool.incoming / f"{dead.pid}.abc.part"
    live = spool.incoming / f"{os.getpid()}.def.part"
    stale.write_bytes(b"partial copy of a crashed process")
    live.write_bytes(b"a copy in progress in a running daemon")
    Spool(tmp_path / "spool").prepare()  # a second process (a CLI command) opening the station
    assert not stale.exists()
    assert live.exists()


def stored_checks(station: Station) -> list[str]:
    with station.reading() as session:
        rows = session.exec(select(CustodyEntry).where(CustodyEntry.event_type == "clip.stored"))
        return [json.loads(e.entry)["data"]["checked_by"] for e in rows]


def test_store_by_hard_link_needs_no_second_read_of_the_file_just_hashed(
    station: Station, volume: Path
) -> None:
    ingest_volume(station, volume)
    store_pending(station)
    checks = stored_checks(station)
    assert checks and set(checks) == {"hard link to the spool file hashed at ingest"}


def test_spool_copy_from_an_earlier_run_is_read_back_before_it_counts_as_stored(
    tmp_path: Path, volume: Path
) -> None:
    first = open_station(make_settings(tmp_path), actor="user:test")
    try:
        report = ingest_volume(first, volume)
    finally:
        first.close()
    # A later process (a restart, `evidence-agent store`) did not hash these files itself.
    later = open_station(make_settings(tmp_path), actor="user:test")
    try:
        victim = next(c for c in report.clips if c.outcome == "new")
        spooled = later.spool.path_of(victim.sha256)
        spooled.chmod(0o600)
        with spooled.open("r+b") as f:
            f.write(b"\xff")  # one byte changed on disk after the ingest hash was taken
        result = store_pending(later)
        assert "SHA-256" in result.integrity_failures[victim.sha256]
        assert set(stored_checks(later)) == {
            "the store's checksum or a read back, equal to the ingest hash"
        }
        with later.reading() as session:
            clip = session.exec(select(Clip).where(Clip.sha256 == victim.sha256)).one()
        assert clip.state == "spooled"  # not stored, so its recorder is never cleared
        (aside,) = later.spool.set_aside_copies(victim.sha256)  # kept, out of the way
        assert aside.read_bytes().startswith(b"\xff") and not spooled.exists()
        assert not later.store.exists(victim.sha256)
    finally:
        later.close()


def test_hashed_here_is_only_the_unchanged_file_this_spool_wrote(tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "a.mp4").write_bytes(b"footage" * 1000)
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    copied = spool.copy_in(LocalVolume(vol), b"a.mp4")
    assert spool.hashed_here(copied.sha256)
    assert not Spool(tmp_path / "spool").hashed_here(copied.sha256)  # another process
    copied.path.chmod(0o600)
    with copied.path.open("ab") as f:
        f.write(b"!")
    assert not spool.hashed_here(copied.sha256)


def test_two_docks_of_one_volume_at_once_both_finish_and_leave_nothing_behind(
    station: Station, volume: Path
) -> None:
    """Two docks read the same recorder at once (two `ingest` runs, a dock folder renamed while
    it is read): the first holds a file it has read while the second takes every file and the
    store keeps them. The first then finds each file taken: no catalog error, both docks end,
    and it leaves no spool copy of what is already stored."""
    gate = gate_spool(station, hold_at=2, durable=True)
    first: list[object] = []
    reader = threading.Thread(target=lambda: first.append(_ingest_catching(station, volume)))
    reader.start()
    try:
        assert gate.entered.wait(30)
        second = ingest_volume(station, volume)
        assert second.state == "finished"
        assert store_pending(station).stored  # the store took the second dock's clips
    finally:
        gate.release.set()
        reader.join(60)
    (report,) = first
    assert isinstance(report, IngestReport), report
    assert report.state == "finished"
    outcomes = [c.outcome for c in report.clips]
    assert outcomes[0] == "new" and set(outcomes[1:]) == {"already_ingested"}
    with station.reading() as session:
        assert {d.state for d in session.exec(select(DockSession))} == {"finished"}
        assert len(session.exec(select(ClipSource)).all()) == len(clips(station))
    spooled = {c.sha256 for c in clips(station) if c.state == "spooled"}
    assert set(station.spool.pending()) <= spooled
    assert list(station.spool.incoming.iterdir()) == []


def _ingest_catching(station: Station, volume: Path) -> object:
    try:
        return ingest_volume(station, volume)
    except Exception as e:  # noqa: BLE001 - the test asserts on it
        return e


# --- a real disk that fails: ext2 on a loop device, its backing file cut short under it ----------

VICTIM = "DCIM/100MEDIA/A123456_100231_20261120000000_0000.MP4"  # sorts before every demo clip


def _run(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


@contextlib.contextmanager
def failing_disk(tmp_path: Path, template: DemoVolume) -> Iterator[tuple[Path, Path, str]]:
    """The demo volume on a real 16 MiB ext2 file system on a loop device, plus one clip that
    fills the rest of it, so that its blocks are the disk's last: (mount point, backing file,
    loop device). Cutting the backing file short (`shrink`) then gives real I/O errors for
    the blocks past the new end, from the block layer, as a failing card does."""
    tools = ("losetup", "mkfs.ext2", "mount", "umount", "blockdev")
    if os.geteuid() != 0 or not all(shutil.which(t) for t in tools):
        service_missing("a disk that fails needs root and util-linux, e2fsprogs (loop devices)")
    image = tmp_path / "card.img"
    image.write_bytes(b"")
    os.truncate(image, 16 << 20)
    _run("mkfs.ext2", "-q", "-F", "-b", "4096", "-m", "0", str(image))
    loop = _run("losetup", "--find", "--show", str(image))
    mount_point = tmp_path / "card"
    mount_point.mkdir()
    try:
        _run("mount", "-o", "nosuid,nodev,noexec", loop, str(mount_point))
        try:
            shutil.copytree(template.root, mount_point, dirs_exist_ok=True)
            with (
                (mount_point / VICTIM).open("wb", buffering=0) as victim,
                contextlib.suppress(OSError),  # ENOSPC: the disk is full
            ):
                while True:
                    victim.write(os.urandom(1 << 20))
            os.sync()
            for path in mount_point.rglob("*"):
                if path.is_file():  # read from the disk from now on, not from memory
                    fd = os.open(path, os.O_RDONLY)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    os.close(fd)
            yield mount_point, image, loop
        finally:
            subprocess.run(["umount", str(mount_point)], check=False)
    finally:
        subprocess.run(["losetup", "--detach", loop], check=False)


def shrink(image: Path, loop: str, size: int) -> None:
    """The disk is now `size` bytes: every block past it gives EIO."""
    os.truncate(image, size)
    _run("blockdev", "--flushbufs", loop)
    _run("losetup", "--set-capacity", loop)


def read_error(path: Path) -> int | None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        while os.readv(fd, [mmap.mmap(-1, 1 << 20)]):
            pass
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)
    return None


def test_one_unreadable_file_is_reported_and_the_rest_is_taken(
    station: Station, tmp_path: Path, demo_template: DemoVolume
) -> None:
    with failing_disk(tmp_path, demo_template) as (volume, image, loop):
        shrink(image, loop, 15 << 20)
        assert read_error(volume / VICTIM) == errno.EIO  # the disk fails there, and only there
        assert not any(
            read_error(volume / m.path.relative_to(demo_template.root)) for m in demo_template.media
        )

        for dock in range(2):  # the re-dock does not stop at the same file either
            report = ingest_volume(station, volume)
            assert report.state == "finished"
            unreadable = [n for n in report.not_ingested if n.source_path == VICTIM]
            assert [n.reason for n in unreadable] == ["unreadable"]
            assert "Input/output error (EIO)" in unreadable[0].detail
            expected = "new" if dock == 0 else "already_ingested"
            assert [c.outcome for c in report.clips] == [expected] * len(demo_template.media)
            assert report.exit_code == ExitCode.WARNING
    assert len(clips(station)) == len(demo_template.media)
    assert [
        e["reason"]
        for e in events(station, "file.not_ingested")
        if e["data"]["source_path"] == VICTIM
    ] == ["unreadable"] * 2


def test_an_io_error_with_the_whole_disk_gone_ends_the_dock(
    station: Station, tmp_path: Path, demo_template: DemoVolume
) -> None:
    gate = gate_spool(station, hold_at=2)
    with failing_disk(tmp_path, demo_template) as (volume, image, loop):
        done: list[object] = []
        reader = threading.Thread(target=lambda: done.append(_ingest_catching(station, volume)))
        reader.start()
        try:
            assert gate.entered.wait(30)
            shrink(image, loop, 0)  # nothing of it can be read now, its root neither
        finally:
            gate.release.set()
            reader.join(60)
    (error,) = done
    assert isinstance(error, VolumeGoneError), error
    assert "Input/output error" in error.message
    with station.reading() as session:
        (dock,) = session.exec(select(DockSession)).all()
    assert dock.state == "interrupted" and dock.clips_new == 1


def test_reclaiming_a_copy_takes_its_upload_state_and_only_its_own(tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "a.mp4").write_bytes(b"footage" * 1000)
    (vol / "b.mp4").write_bytes(b"other footage" * 1000)
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    mine = spool.copy_in(LocalVolume(vol), b"a.mp4").sha256
    other = spool.copy_in(LocalVolume(vol), b"b.mp4").sha256
    made = []
    for sha in (mine, other):
        state = spool.root / f"{sha}.upload.json"
        # a state file and the temporary files a crash may leave beside it (multipart.py)
        for name in (state.name, f".{state.name}.k2x9_q1.tmp", f".{state.name}.a.tmp"):
            (spool.root / name).write_text("{}", encoding="utf-8")
            made.append(spool.root / name)
    spool.remove(mine)
    left = sorted(p.name for p in spool.root.iterdir() if p.is_file())
    assert left == sorted([other] + [p.name for p in made if other in p.name])
    assert spool.pending() == [other]


class _HoldFirstProbe:
    """The station's prober, but the first probe waits until the files after it are read and
    queued: they then reach stage two together, as on a volume of many small files."""

    def __init__(self, station: Station, queued: int) -> None:
        self._inner = station.prober
        self._spool = station.spool
        self._queued = queued
        self._held = False

    def probe(self, path: Path) -> MediaInfo:
        if not self._held:
            self._held = True
            deadline = time.monotonic() + 30
            while len(list(self._spool.incoming.iterdir())) < self._queued:
                assert time.monotonic() < deadline, "the files after the first were not read"
                time.sleep(0.01)
        return self._inner.probe(path)


def small_files(tmp_path: Path, count: int) -> Path:
    vol = tmp_path / "small"
    vol.mkdir()
    for i in range(1, count + 1):
        name = f"A123456_100231_202611201000{i:02d}_{i:04d}.JPG"
        (vol / name).write_bytes(os.urandom(3000))  # not media: flagged, still catalogued
    return vol


def test_files_waiting_together_are_catalogued_together(
    station: Station, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evidence_agent.services import cataloguing

    vol = small_files(tmp_path, 6)
    station.prober = _HoldFirstProbe(station, queued=5)
    batches: list[int] = []
    together = cataloguing._catalog_examined

    def counted(*args: Any) -> Any:
        batches.append(len(args[2]))
        return together(*args)

    monkeypatch.setattr(cataloguing, "_catalog_examined", counted)
    report = ingest_volume(station, vol)
    assert batches == [1, 5]  # the first alone, the five read meanwhile in one transaction
    assert [c.source_path for c in report.clips] == sorted(p.name for p in vol.iterdir())
    assert {c.outcome for c in report.clips} == {"new"}
    assert all("unreadable_media" in c.flags for c in report.clips)
    assert len(clips(station)) == 6
    assert event_types(station).count("clip.ingested") == 6


def test_a_file_that_cannot_be_catalogued_leaves_the_others_of_its_batch_catalogued(
    station: Station, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evidence_agent.services import cataloguing

    vol = small_files(tmp_path, 6)
    station.prober = _HoldFirstProbe(station, queued=5)
    bad = sorted(p.name for p in vol.iterdir())[3]
    make_row = cataloguing._clip_row

    def failing(*args: Any) -> Clip:
        if args[3].display == bad:  # the VolumeFile
            raise StorageError("the catalog refused this clip")
        return make_row(*args)

    monkeypatch.setattr(cataloguing, "_clip_row", failing)
    with pytest.raises(StorageError, match="refused this clip"):
        ingest_volume(station, vol)
    catalogued = sorted(c.source_path for c in clips(station))
    assert catalogued == sorted(p.name for p in vol.iterdir() if p.name != bad)
    assert event_types(station).count("clip.ingested") == 5
    with station.reading() as session:
        dock = session.exec(select(DockSession)).one()
    assert dock.state == "failed" and dock.error == "the catalog refused this clip"
    # every copy made durable is in the spool, the one not catalogued too: nothing is lost
    assert len(station.spool.pending()) == 6


# A stand-in for the probe worker (adapters/pyav.py's protocol) that dies on a file whose bytes
# start with CRASH, as a demuxer crashed by a hostile file would.
_CRASHING_WORKER = """
import json, os, signal, sys
print(json.dumps({"ready": {}}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    with open(bytes.fromhex(request["path"]), "rb") as f:
        if f.read(5) == b"CRASH":
            os.kill(os.getpid(), signal.SIGSEGV)
    probe = {"format": {"format_name": "mov", "duration": 1.0},
             "streams": [{"codec_type": "video", "codec_name": "h264"}]}
    print(json.dumps({"id": request["id"], "probe": probe}), flush=True)
"""


def test_a_file_that_kills_the_probe_worker_is_still_ingested_flagged(
    station: Station, tmp_path: Path
) -> None:
    vol = tmp_path / "hostile"
    vol.mkdir()
    names = [f"A123456_100231_2026112010000{i}_000{i}.MP4" for i in (1, 2, 3)]
    for name in names:
        (vol / name).write_bytes(os.urandom(2000))
    (vol / names[1]).write_bytes(b"CRASH" + os.urandom(2000))
    prober = PyAVProber(timeout=10, worker=[sys.executable, "-c", _CRASHING_WORKER])
    station.prober = prober
    try:
        report = ingest_volume(station, vol)
    finally:
        prober.close()
    unreadable = {c.source_path: "unreadable_media" in c.flags for c in report.clips}
    assert unreadable == {names[0]: False, names[1]: True, names[2]: False}
    errors = {
        e["data"]["source_path"]: e["data"]["probe_error"] for e in events(station, "clip.ingested")
    }
    assert errors[names[1]].endswith("not readable media: FFmpeg was killed by SIGSEGV reading it")
    assert errors[names[0]] is None and errors[names[2]] is None  # the next worker read it
