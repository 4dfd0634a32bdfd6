"""A change of the roles file, noticed by its hash and recorded in the custody log (roles.changed)."""

from __future__ import annotations

import hashlib
import json
import pwd
import threading
from pathlib import Path

from sqlmodel import col, select

from evidence_agent.catalog.models import CustodyEntry
from evidence_agent.custody.vocabulary import EventType
from evidence_agent.services.station import Station, service_actor

ROLES_FILE_NAME = "roles.toml"


class RolesWatch:
    """Compares the roles file with the last `roles.changed` the log holds, and logs a change.

    The log is asked once; after that the hash last logged is remembered, so a check is a read
    of one small file. Changes made between two checks are one change: the log records what
    the file was whenever someone acted under it."""

    def __init__(self, station: Station) -> None:
        self.station = station
        self.path = station.settings.data_dir / ROLES_FILE_NAME
        self._logged: str | None = None
        self._known = False
        self._lock = threading.Lock()

    def check(self) -> None:
        """Log `roles.changed` when the file is not what the log last said it was."""
        with self._lock:
            if not self._known:
                self._logged = _last_logged(self.station)
                self._known = True
            current = _file_hash(self.path)
            if current == self._logged:
                return
            _record(self.station, self.path, self._logged, current)
            self._logged = current


def _file_hash(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _last_logged(station: Station) -> str | None:
    with station.reading() as session:
        entry = session.exec(
            select(CustodyEntry.entry)
            .where(CustodyEntry.station_id == station.settings.station_id)
            .where(CustodyEntry.event_type == EventType.ROLES_CHANGED)
            .order_by(col(CustodyEntry.seq).desc())
        ).first()
    if entry is None:
        return None
    new = json.loads(entry).get("data", {}).get("new_sha256")
    return new if isinstance(new, str) else None


def _record(station: Station, path: Path, old: str | None, new: str | None) -> None:
    owner: str | None = None
    mode: str | None = None
    if new is not None:
        info = path.stat()
        mode = f"{info.st_mode & 0o7777:04o}"
        try:
            owner = pwd.getpwuid(info.st_uid).pw_name
        except KeyError:
            owner = f"uid{info.st_uid}"
    with station.transaction() as session:
        station.record(
            session,
            EventType.ROLES_CHANGED.event(
                station.settings.station_id,
                actor=service_actor(station.settings.station_id),
                reason="the roles file differs from the one last logged",
                data={
                    "file": str(path),
                    "old_sha256": old,
                    "new_sha256": new,
                    "owner": owner,
                    "mode": mode,
                },
            ),
        )
