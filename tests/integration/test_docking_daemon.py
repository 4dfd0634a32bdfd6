"""The docking daemon in process: sources, re-docks while stopping, SIGTERM mid-dock, metrics, sd_notify."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from evidence_agent.adapters.folder_source import FolderDockSource
from evidence_agent.adapters.sd_notify import SystemdNotifier
from evidence_agent.catalog.models import Clip, CustodyEntry, DockSession
from evidence_agent.catalog.queries import station_status
from evidence_agent.config import build_settings
from evidence_agent.domain.deadline import DeadlineRule
from evidence_agent.errors import EvidenceError
from evidence_agent.ports import DockEvent
from evidence_agent.services.daemon import Daemon
from evidence_agent.services.demo_recorder import DemoVolume, make_demo_recorder
from evidence_agent.services.station import Station, open_station, service_actor
from tests.docking_gates import gate_spool
from tests.support import service_missing

START = datetime(2026, 11, 20, 1, 0, 0, tzinfo=UTC)
TIMEOUT = 30.0


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoVolume:
    if shutil.which("ffmpeg") is None:
        service_missing("ffmpeg is not installed")
    return make_demo_recorder(tmp_path_factory.mktemp("template") / "vol", start=START)


class BrokenUdev:
    """Like UdevDockSource on a host without udev or netlink."""

    def start(self, emit: Callable[[DockEvent], None]) -> None:
        raise EvidenceError("cannot listen for USB devices through udev: [Errno 97] not supported")

    def stop(self) -> None:
        raise AssertionError("a source that never started is not stopped")


class ManualSource:
    def start(self, emit: Callable[[DockEvent], None]) -> None:
        self.emit = emit

    def stop(self) -> None:
        pass


def wait_for(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def make_station(tmp_path: Path, **dock: Any) -> Station:
    settings = build_settings(
        {"station": {"id": "d-station"}, "dock": {"settle_seconds": 0, "metrics_port": 0, **dock}},
        {"EVIDENCE_AGENT_DATA_DIR": str(tmp_path / "data")},
    )
    return open_station(settings, actor=service_actor("d-station"))


@contextmanager
def running(daemon: Daemon) -> Iterator[Daemon]:
    daemon.start()
    thread = threading.Thread(target=daemon.serve)
    thread.start()
    try:
        yield daemon
    finally:
        daemon.stop()
        thread.join(TIMEOUT)
        assert not thread.is_alive()


def sessions(station: Station, state: str) -> list[DockSession]:
    with station.reading() as session:
        return list(
            session.exec(
                select(DockSession)
                .where(DockSession.state == state)
                .order_by(col(DockSession.started_at))
            )
        )


def clips(station: Station) -> list[Clip]:
    with station.reading() as session:
        return list(session.exec(select(Clip)))


def test_without_udev_the_error_is_logged_and_the_dock_folder_keeps_working(
    tmp_path: Path, demo: DemoVolume, caplog: pytest.LogCaptureFixture
) -> None:
    station = make_station(tmp_path)
    folder = FolderDockSource(station.settings.dock_dir)
    try:
        with running(Daemon(station, [BrokenUdev(), folder])) as daemon:  # type: ignore[list-item]
            assert daemon.sources == [folder]
            assert "dock source BrokenUdev is off" in caplog.text
            shutil.copytree(demo.root, tmp_path / "staged")
            (tmp_path / "staged").rename(station.settings.dock_dir / "A123456")
            wait_for("the folder dock", lambda: sessions(station, "finished"))
            assert len(clips(station)) == len(demo.media)
    finally:
        station.close()


def test_redocked_while_the_unplugged_dock_is_stopping_resumes_after_it(
    tmp_path: Path, demo: DemoVolume
) -> None:
    station = make_station(tmp_path)
    gate = gate_spool(station)
    source = ManualSource()
    volume = tmp_path / "vol"
    shutil.copytree(demo.root, volume)
    added = DockEvent("added", volume, "folder", str(volume))
    try:
        with running(Daemon(station, [source])) as daemon:
            source.emit(added)
            assert gate.entered.wait(TIMEOUT)
            source.emit(DockEvent("removed", volume, "folder", str(volume)))
            wait_for("the removal", lambda: any(d["gone"] for d in daemon.docks()))
            source.emit(added)  # back before the first dock reached a file boundary
            gate.release.set()

            wait_for("the resumed dock", lambda: sessions(station, "finished"))
            (stopped,) = sessions(station, "interrupted")
            (resumed,) = sessions(station, "finished")
            assert 1 <= stopped.clips_new < len(demo.media)
            assert (resumed.clips_new, resumed.clips_known) == (
                len(demo.media) - stopped.clips_new,
                stopped.clips_new,
            )
            assert len(clips(station)) == len(demo.media)
    finally:
        station.close()


def test_stop_mid_dock_ends_at_a_file_boundary_and_the_next_start_resumes(
    tmp_path: Path, demo: DemoVolume
) -> None:
    station = make_station(tmp_path)
    gate = gate_spool(station)
    source = ManualSource()
    volume = tmp_path / "vol"
    shutil.copytree(demo.root, volume)
    try:
        daemon = Daemon(station, [source])
        with running(daemon):
            source.emit(DockEvent("added", volume, "folder", str(volume)))
            assert gate.entered.wait(TIMEOUT)
            daemon.stop()  # SIGTERM's handler does this
            gate.release.set()
        (stopped,) = sessions(station, "interrupted")
        assert "stopping" in (stopped.error or "")
        assert 1 <= len(clips(station)) < len(demo.media)

        with running(Daemon(station, [source])):
            source.emit(DockEvent("added", volume, "folder", str(volume)))
            wait_for("the resumed dock", lambda: sessions(station, "finished"))
        assert len(clips(station)) == len(demo.media)
        assert all(c.state == "stored" for c in clips(station))
    finally:
        station.close()


def test_metrics_on_loopback_and_sd_notify_lines(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    station = make_station(tmp_path, metrics_port=port)
    notify_path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(notify_path))
    server.settimeout(TIMEOUT)
    try:
        daemon = Daemon(
            station,
            [ManualSource()],
            notifier=SystemdNotifier(str(notify_path)),
            environ={"WATCHDOG_USEC": "1000000"},
        )
        with running(daemon):
            received = []
            while not any("WATCHDOG=1" in m for m in received):
                received.append(server.recv(4096).decode())
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
            assert b"evidence_agent_recorders_docked 0.0" in body
            assert b"evidence_agent_backlog_clips 0.0" in body
        while not any("STOPPING=1" in m for m in received):
            received.append(server.recv(4096).decode())
        assert received[0].startswith("READY=1\nSTATUS=idle")
    finally:
        server.close()
        station.close()


def anonymous_copy(demo: DemoVolume, target: Path) -> bytes:
    """The demo volume without its identity file and with no serial in its file names: no
    recorder can be named for it. Returns the identity file's bytes, to put back later."""
    shutil.copytree(demo.root, target)
    identity = demo.identity_file.relative_to(demo.root)
    saved = (target / identity).read_bytes()
    (target / identity).unlink()
    for index, media in enumerate(demo.media):
        rel = media.path.relative_to(demo.root)
        renamed = (target / rel).with_name(f"FILE{index:04d}{rel.suffix}")
        (target / rel).rename(renamed)
        written = int((START.timestamp() + 60 * index) * 1e9)  # as the recorder wrote them
        os.utime(renamed, ns=(written, written))
    return saved


def test_a_volume_no_recorder_is_named_for_waits_in_view_until_its_identity_file_comes(
    tmp_path: Path, demo: DemoVolume
) -> None:
    station = make_station(tmp_path)
    settings = station.settings
    staged = tmp_path / "staged"
    identity = anonymous_copy(demo, staged)
    daemon = Daemon(station, [FolderDockSource(settings.dock_dir)])
    try:
        with running(daemon):
            volume = settings.dock_dir / "unlabelled"
            staged.rename(volume)
            (waiting,) = wait_for(
                "the unidentified dock", lambda: sessions(station, "unidentified")
            )
            assert waiting.files_seen == len(demo.media) and waiting.recorder_id is None
            assert waiting.bytes_total == sum(m.path.stat().st_size for m in demo.media)
            assert waiting.oldest_file_at == START
            assert clips(station) == []
            (event,) = custody_events(station, "dock.unidentified")
            assert event["subject"] == {"kind": "dock", "id": waiting.id}
            assert event["data"]["files"] == len(demo.media)
            wait_for(
                "the metric",
                lambda: (
                    daemon.metrics.registry.get_sample_value("evidence_agent_unidentified_docks")
                    == 1
                ),
            )
            with station.reading() as session:
                view = station_status(session, station.clock.now(), DeadlineRule()).to_json()
            (shown,) = view["unidentified_docks"]
            assert (shown["dock_session"], shown["files"]) == (waiting.id, len(demo.media))
            assert shown["oldest_file_at"] == "2026-11-20T01:00:00.000000Z"
            assert shown["deadline"] == "breached"  # over 24 hours since its oldest file

            # The recorder's identity file is put on it: the same dock is read.
            (volume / demo.identity_file.name).write_bytes(identity)
            (finished,) = wait_for("the identified dock", lambda: sessions(station, "finished"))
            assert finished.id == waiting.id and finished.started_at == waiting.started_at
            assert finished.clips_new == len(demo.media) and finished.recorder_id is not None
            wait_for(
                "the metric",
                lambda: (
                    daemon.metrics.registry.get_sample_value("evidence_agent_unidentified_docks")
                    == 0
                ),
            )
        assert sessions(station, "unidentified") == []
        assert len(clips(station)) == len(demo.media)
    finally:
        station.close()


def custody_events(station: Station, event_type: str) -> list[dict[str, Any]]:
    with station.reading() as session:
        rows = session.exec(select(CustodyEntry).where(CustodyEntry.event_type == event_type))
        return [json.loads(row.entry) for row in rows]


def test_a_dock_folder_renamed_while_it_is_read_ends_both_docks_cleanly(
    tmp_path: Path, demo: DemoVolume
) -> None:
    """The first dock has read a file and holds it when its folder is renamed; the dock of the
    new name takes every file and the store keeps them. The first then finds each file taken:
    both docks end, no clip twice, no spool copy left of what is stored."""
    station = make_station(tmp_path)
    gate = gate_spool(station, hold_at=2, durable=True)
    folder = station.settings.dock_dir
    shutil.copytree(demo.root, tmp_path / "staged")
    try:
        with running(Daemon(station, [FolderDockSource(folder)])):
            (tmp_path / "staged").rename(folder / "first-name")
            assert gate.entered.wait(TIMEOUT)
            (folder / "first-name").rename(folder / "second-name")
            wait_for("the second dock", lambda: sessions(station, "finished"))
            wait_for(
                "the store",
                lambda: (
                    len(clips(station)) == len(demo.media)
                    and all(c.state == "stored" for c in clips(station))
                ),
            )
            gate.release.set()
            wait_for("the first dock", lambda: not sessions(station, "running"))
            with station.reading() as session:
                docks = session.exec(select(DockSession)).all()
            assert len(docks) == 2 and {d.state for d in docks} <= {"finished", "interrupted"}
            assert len(clips(station)) == len(demo.media)
            assert station.spool.pending() == []
    finally:
        gate.release.set()
        station.close()
