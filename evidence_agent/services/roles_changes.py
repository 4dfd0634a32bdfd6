"""A change of the roles file in the custody log (roles.changed): an administrator's, under their name, or one noticed by its hash."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from evidence_agent.catalog.models import CustodyEntry
from evidence_agent.custody.vocabulary import EventType
from evidence_agent.domain.roles import Caller
from evidence_agent.domain.text import check_plain_text
from evidence_agent.errors import ConfigError, InputError, PermissionDeniedError
from evidence_agent.io.atomic import write_atomically
from evidence_agent.services.guard import refuse
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
            current = _file_hash(self.path)
            if current == self._last():
                return
            _record(self.station, self.path, self._logged, current)
            self._logged = current

    def record_edit(self, caller: Caller, login: str | None, edit: RolesEdit) -> dict[str, Any]:
        """Log an administrator's edit (`roles grant`/`revoke`, made with their own rights just
        before) under their name, `login` being the person behind their session (sudo). The
        kernel names `caller`; only root and the file's owner can have written the file, and
        the file must still be what they wrote."""
        with self._lock:
            current = _file_hash(self.path)
            owner = self.path.stat().st_uid if current is not None else 0
            if caller.identity.uid not in (0, owner):
                refuse(
                    self.station,
                    caller,
                    "roles.change",
                    PermissionDeniedError(
                        "refused: only root or the roles file's owner changes roles",
                        remedy="an administrator runs it: sudo evidence-agent roles ...",
                    ),
                    reason=edit.reason,
                )
            if current != edit.new_sha256:
                raise InputError(
                    "the roles file changed again after this edit: not recorded as yours",
                    remedy="run the command again; the change on file is logged by the station",
                )
            old = self._last()
            _record(self.station, self.path, old, current, by=(caller, login, edit))
            self._logged = current
            return {"file": str(self.path), "old_sha256": old, "new_sha256": current}

    def _last(self) -> str | None:
        if not self._known:
            self._logged = _last_logged(self.station)
            self._known = True
        return self._logged


@dataclass(frozen=True)
class RolesEdit:
    """What `roles grant` or `roles revoke` changed, and the file's hash after it."""

    user: str
    granted: tuple[str, ...]
    revoked: tuple[str, ...]
    new_sha256: str
    reason: str

    @classmethod
    def from_json(cls, fields: Mapping[str, Any]) -> RolesEdit:
        """An edit as a local API request carries it; anything malformed is refused."""
        try:
            edit = cls(
                str(fields["user"]),
                tuple(str(r) for r in fields["granted"]),
                tuple(str(r) for r in fields["revoked"]),
                str(fields["new_sha256"]),
                str(fields["reason"]),
            )
        except (KeyError, TypeError) as e:
            raise InputError(f"a roles.record request lacks {e}") from None
        check_plain_text(edit.user, "account name")
        check_plain_text(edit.reason, "reason")
        return edit

    def to_json(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "granted": list(self.granted),
            "revoked": list(self.revoked),
            "new_sha256": self.new_sha256,
            "reason": self.reason,
        }


def replace_roles_file(path: Path, data: bytes) -> str:
    """Give the roles file `data` at once, keeping its owner and mode (a new one: this
    account's, mode 0644, readable by the commands run on the station). Returns its SHA-256."""
    try:
        info: os.stat_result | None = path.stat()
    except FileNotFoundError:
        info = None
    mode = info.st_mode & 0o7777 if info is not None else 0o644
    try:
        write_atomically(path, data, mode=mode)
        os.chmod(path, mode)  # written under the umask
        if info is not None and info.st_uid != os.geteuid():
            os.chown(path, info.st_uid, info.st_gid)
    except PermissionError as e:
        raise PermissionDeniedError(
            f"cannot write the roles file {path}: {e.strerror}",
            remedy="an administrator changes roles: sudo evidence-agent roles ...",
        ) from e
    except OSError as e:
        raise ConfigError(f"cannot write the roles file {path}: {e.strerror}") from e
    return hashlib.sha256(data).hexdigest()


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


def _record(
    station: Station,
    path: Path,
    old: str | None,
    new: str | None,
    *,
    by: tuple[Caller, str | None, RolesEdit] | None = None,
) -> None:
    owner: str | None = None
    mode: str | None = None
    if new is not None:
        info = path.stat()
        mode = f"{info.st_mode & 0o7777:04o}"
        try:
            owner = pwd.getpwuid(info.st_uid).pw_name
        except KeyError:
            owner = f"uid{info.st_uid}"
    data: dict[str, Any] = {
        "file": str(path),
        "old_sha256": old,
        "new_sha256": new,
        "owner": owner,
        "mode": mode,
    }
    actor = service_actor(station.settings.station_id)
    reason = "the roles file differs from the one last logged"
    if by is not None:
        caller, login, edit = by
        actor, reason = caller.actor, edit.reason
        data |= {"user": edit.user, "granted": list(edit.granted), "revoked": list(edit.revoked)}
        if login is not None:
            data["login_user"] = login
    with station.transaction() as session:
        station.record(
            session,
            EventType.ROLES_CHANGED.event(
                station.settings.station_id, actor=actor, reason=reason, data=data
            ),
        )
