"""Store service: the upload queue from the spool to the object store, verified, then reclaimed.

Upload is apart from ingest: ingest catalogues clips in the spool (the 24-hour clock stops
there) and carries on while the store is away; this module uploads them when it is back.

- `store_clip` puts one clip, reads back (or asks the server for) its checksum, compares it with
  the ingest hash, marks the clip stored with its custody event, and only then reclaims the spool
  copy (and its multipart upload state).
- `store_pending` is the retry: every clip of this station still in the spool, the spool copies
  of clips already stored, the custody checkpoints not yet published, and a spool-space check.
- `store_clips` does the same for several clips and marks them stored in one transaction.
- `StoreWorker` stores clips as ingest catalogues them (those waiting together with
  `store_clips`), and backs off while the store is away.

Custody checkpoints are published by checkpoint_publishing.py, the spool's free space watched
by spool_space.py; `store_pending` calls both.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hmac
import logging
import os
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from evidence_agent.adapters.s3.errors import StoreUnavailableError
from evidence_agent.catalog.models import Clip
from evidence_agent.custody.events import CustodyEvent, format_time
from evidence_agent.custody.vocabulary import EventType
from evidence_agent.domain.states import ClipState
from evidence_agent.errors import EvidenceError, IntegrityError, StorageError
from evidence_agent.io.hashing import check_digest, hash_file
from evidence_agent.ports import LegalHolding, LockExtending, StoredObject
from evidence_agent.services.checkpoint_publishing import PublishReport, publish_checkpoints
from evidence_agent.services.spool_space import SpoolSpace, watch_spool_space
from evidence_agent.services.station import Station
from evidence_agent.services.storage_check import EvidenceBucketRefused, require_checked_store

log = logging.getLogger(__name__)

STORE_CONCURRENCY = 2  # clips uploaded at once by the retry (each sends its parts in parallel)
# Clips the store worker takes at once from those waiting: claimed together (an open spool copy
# each) and marked stored in one transaction.
_WORKER_BATCH = 16


# --- the store being away -----------------------------------------------------------------------

# The store could not be reached (transient), or its self-test refused it: no clip is tried
# until the retry, as opposed to a refusal or a failed check of one clip.
_STORE_AWAY = (StoreUnavailableError, EvidenceBucketRefused)


def _left_message(away: str) -> str:
    """Why a clip was not tried: the store was found away before it."""
    return (
        f"{away}; the clip stays in the spool and is uploaded when the store is back "
        "(`evidence-agent store`, or the daemon's retry)"
    )


def _kept_message(e: EvidenceError) -> str:
    return (
        f"{e.message}; the clip stays in the spool and is uploaded when the store is back "
        "(`evidence-agent store`, or the daemon's retry)"
    )


# --- reports -----------------------------------------------------------------------------------


@dataclass
class StoreReport:
    stored: list[str] = field(default_factory=list)  # clip ids
    failed: dict[str, str] = field(default_factory=dict)  # sha256 -> message
    integrity_failures: dict[str, str] = field(default_factory=dict)
    # The store was away (or refused by its self-test): why. Every clip not tried is in `failed`.
    unavailable: str | None = None
    waiting: int = 0  # clips of this station left in the spool
    reclaimed: list[str] = field(default_factory=list)  # spool copies of stored clips removed
    checkpoints: PublishReport | None = None
    spool: SpoolSpace | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "stored": self.stored,
            "failed": self.failed,
            "integrity_failures": self.integrity_failures,
            "unavailable": self.unavailable,
            "waiting": self.waiting,
            "reclaimed": self.reclaimed,
            "checkpoints": self.checkpoints.to_json() if self.checkpoints else None,
            "spool": self.spool.to_json() if self.spool else None,
        }


# --- one clip ----------------------------------------------------------------------------------


def _claim(fd: int) -> bool:
    """An exclusive lock on the (open) spool copy while it is uploaded, for threads and processes
    alike: False when another worker holds it. Closing `fd` releases it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise
        return False
    return True


def _load(station: Station, sha256s: Sequence[str]) -> dict[str, Clip]:
    """The clips of these hashes that the catalog has."""
    if not sha256s:
        return {}
    with station.reading() as session:
        clips = session.exec(select(Clip).where(col(Clip.sha256).in_(sha256s)))
        return {clip.sha256: clip for clip in clips}


def store_clip(station: Station, sha256: str) -> str | None:
    """Put one spooled clip in the store, verify it against its ingest hash, mark it stored.

    Returns the clip id, or None when there was nothing to do here: already stored (a leftover
    spool copy is then verified against the store and reclaimed), another worker is uploading
    it, or it is another station's clip (its own station stores it). Raises StorageError
    (StoreUnavailableError when the store cannot be reached) or IntegrityError; in every
    failure the clip stays spooled and its spool copy stays, unless the copy itself does not
    hash to the ingest hash: it is then set aside, and the next dock of the recorder reads the
    original again."""
    [outcome] = store_clips(station, [sha256])
    if isinstance(outcome, EvidenceError):
        raise outcome
    return outcome


@dataclass(frozen=True)
class _Checked:
    """A clip put in the store and checked against its ingest hash, not yet marked stored."""

    clip: Clip
    stored: StoredObject
    checked_by: str


def store_clips(station: Station, sha256s: Sequence[str]) -> list[str | EvidenceError | None]:
    """store_clip for several clips, each outcome in its place (an error is returned, not
    raised). Each is claimed, put and checked as store_clip does; then they are marked stored
    together, each with its custody event, in one transaction (one commit for the lot instead
    of one per clip); only then are their spool copies reclaimed.

    Once one finds the store away (StoreUnavailableError, a refused self-test), the clips after
    it are not tried: that same error is their outcome."""
    outcomes: dict[int, str | EvidenceError | None] = {}
    away: EvidenceError | None = None
    with contextlib.ExitStack() as claims:
        before = _load(station, sha256s)
        claimed: list[int] = []
        for i, sha256 in enumerate(sha256s):
            if away is not None:
                outcomes[i] = away
                continue
            try:
                if _claim_copy(station, sha256, before.get(sha256), claims):
                    claimed.append(i)
                else:
                    outcomes[i] = None
            except EvidenceError as e:
                outcomes[i] = e
                if isinstance(e, _STORE_AWAY):  # reclaiming a stored clip's copy asks the store
                    away = e
        # the other worker may have finished meanwhile
        after = _load(station, [sha256s[i] for i in claimed])
        checked: list[tuple[int, _Checked]] = []
        for i in claimed:
            clip = after.get(sha256s[i])
            if away is not None:
                outcomes[i] = away
            elif clip is None or clip.state != ClipState.SPOOLED:
                outcomes[i] = None
            else:
                try:
                    checked.append((i, _put_and_check(station, clip)))
                except EvidenceError as e:
                    outcomes[i] = e
                    if isinstance(e, _STORE_AWAY):
                        away = e
        marked = _mark_stored(station, [c for _, c in checked])
        for (i, done), outcome in zip(checked, marked, strict=True):
            outcomes[i] = outcome
            if isinstance(outcome, str):
                # Only now: the verified stored copy stands in for the spool copy.
                station.spool.remove(done.clip.sha256)
                log.info("clip %s stored and verified in %s", outcome, station.store.describe())
    return [outcomes[i] for i in range(len(sha256s))]


def _claim_copy(
    station: Station, sha256: str, clip: Clip | None, claims: contextlib.ExitStack
) -> bool:
    """Whether the clip's spool copy is ours to upload: its clip is this station's and spooled,
    and no other worker has it; then it stays claimed until `claims` closes. A spool copy of a
    clip stored meanwhile is reclaimed here."""
    if clip is None:
        return False
    if clip.state != ClipState.SPOOLED:
        _reclaim_if_stored(station, clip)
        return False
    if clip.station_id != station.settings.station_id:
        return False
    path = station.spool.path_of(sha256)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        clip = _load(station, [sha256]).get(sha256)
        if clip is None or clip.state != ClipState.SPOOLED:
            return False  # stored and reclaimed by another worker just now
        aside = station.spool.set_aside_copies(sha256)
        if aside:
            # Reported as an integrity failure when it was set aside; until a dock reads the
            # original again the clip only waits, and other clips are stored meanwhile.
            raise StorageError(
                f"clip {clip.id} waits for its recorder: its spool copy did not match its "
                f"ingest hash and was set aside ({aside[-1]})",
                remedy="dock the recorder again: the original is read anew (the recorder is "
                "never cleared before a verified store)",
            ) from None
        raise IntegrityError(
            f"clip {clip.id} is catalogued as spooled but its copy {path} is missing",
            remedy="dock the recorder again (it is never cleared before a verified store) "
            "and run `evidence-agent verify`",
        ) from None
    except OSError as e:
        raise StorageError(
            f"cannot open the spool copy {path} of clip {clip.id}: {e.strerror}",
            remedy="check the spool directory's permissions",
        ) from e
    if not _claim(fd):
        os.close(fd)
        log.debug("clip %s is being uploaded by another worker", clip.id)
        return False
    claims.callback(os.close, fd)  # releases the claim
    return True


def _put_and_check(station: Station, clip: Clip) -> _Checked:
    require_checked_store(station)
    path = station.spool.path_of(clip.sha256)
    hashed = station.spool.hashed_here(clip.sha256)
    try:
        stored = station.store.put(
            clip.sha256, path, clip.size, clip.retention_until, source_checked=hashed
        )
        if stored.linked_to_source and hashed:
            # The stored object is the very file ingest wrote from the bytes it hashed (a hard
            # link on the same file system): reading it back would re-read those same bytes from
            # memory and prove nothing more. `verify` and recorder clearing re-hash it in full.
            return _Checked(clip, stored, "hard link to the spool file hashed at ingest")
        stored = station.store.verify(clip.sha256)
        check_digest(clip.sha256, stored.sha256, f"stored copy of clip {clip.id}")
    except IntegrityError as e:
        corrupt = _set_aside_if_corrupt(station, clip, path)
        if corrupt is None:
            raise
        raise corrupt from e
    return _Checked(clip, stored, "the store's checksum or a read back, equal to the ingest hash")


def _mark_stored(station: Station, checked: list[_Checked]) -> list[str | EvidenceError | None]:
    """Clips put and checked, marked stored with their custody events in one transaction; should
    that fail (a lock that cannot be brought in step), each in a transaction of its own, so that
    the clip it concerns stays spooled with its error while the others are marked."""
    if not checked:
        return []
    try:
        return _mark_together(station, checked)
    except EvidenceError as e:
        if len(checked) == 1:
            return [e]
    outcomes: list[str | EvidenceError | None] = []
    for one in checked:
        try:
            outcomes.extend(_mark_together(station, [one]))
        except EvidenceError as e:
            outcomes.append(e)
    return outcomes


def _mark_together(station: Station, checked: list[_Checked]) -> list[str | EvidenceError | None]:
    outcomes: list[str | EvidenceError | None] = []
    now = station.clock.now()
    with station.transaction() as session:
        ids = [done.clip.id for done in checked]
        rows = {
            row.id: row
            for row in session.exec(
                select(Clip).where(col(Clip.id).in_(ids)).order_by(col(Clip.id)).with_for_update()
            )
        }
        for done in checked:
            clip = done.clip
            row = rows.get(clip.id)
            if row is None or row.state != ClipState.SPOOLED:
                # changed meanwhile by something that does not take the spool lock
                outcomes.append(None)
                continue
            lock = _lock_in_step(station, row, clip.retention_until)
            row.state = ClipState.STORED
            row.stored_at = now
            session.add(row)
            station.record(
                session, _stored_event(station, row, done.stored, now, done.checked_by, lock)
            )
            outcomes.append(clip.id)
    return outcomes


def _set_aside_if_corrupt(station: Station, clip: Clip, path: Path) -> IntegrityError | None:
    """After an integrity failure storing a clip: when its spool copy itself does not hash to
    the ingest hash, the copy is set aside (kept, never stored) and the failure to raise says so.

    Left in place it would fail every later run the same way, and a re-read of the original
    could not replace it. A spool copy that does match stays (None): the store is at fault."""
    try:
        actual = hash_file(path)
    except OSError as e:
        raise StorageError(
            f"cannot read the spool copy {path} of clip {clip.id}: {e.strerror}"
        ) from e
    if hmac.compare_digest(actual, clip.sha256):
        return None
    aside = station.spool.set_aside(clip.sha256)
    return IntegrityError(
        f"the spool copy of clip {clip.id} does not match its ingest hash (SHA-256 is "
        f"{actual}, expected {clip.sha256}): never stored, set aside as {aside}",
        remedy="dock the recorder again: the original is read anew (the recorder is never "
        "cleared before a verified store); check the spool's disk",
    )


def _lock_in_step(station: Station, row: Clip, uploaded_until: datetime | None) -> list[str]:
    """The store's lock, for a clip whose retention grew while it waited in the spool.

    put() locked the object until `uploaded_until` (None: for good). A clip linked to
    a case, made permanent or put on hold meanwhile had no object to lock then (review leaves
    that to the upload): it is locked now, inside the transaction that marks it stored, so the
    clip never counts as stored with a shorter lock than the catalog says."""
    done: list[str] = []
    store = station.store
    longer = row.retention_until is None or (
        uploaded_until is not None and row.retention_until > uploaded_until
    )
    if longer and isinstance(store, LockExtending):
        store.extend_retention(row.sha256, row.retention_until)
        done.append(
            "lock extended to the clip's retention" if row.retention_until else "kept for good"
        )
    if row.legal_hold and isinstance(store, LegalHolding):
        store.set_legal_hold(row.sha256, True)
        done.append("legal hold set")
    return done


def _stored_event(
    station: Station,
    clip: Clip,
    stored: StoredObject,
    now: datetime,
    checked_by: str,
    lock: list[str],
) -> CustodyEvent:
    return EventType.CLIP_STORED.event(
        clip.id,
        actor=station.actor,
        reason="written once to the object store and verified: its SHA-256 equals the ingest hash",
        sha256=clip.sha256,
        data={
            "store": station.store.describe(),
            "key": stored.key,
            "size": stored.size,
            "stored_at": format_time(now),
            "checked_by": checked_by,
            "lock": lock,
            "retain_until": format_time(clip.retention_until) if clip.retention_until else None,
        },
    )


def _reclaim_if_stored(station: Station, clip: Clip) -> bool:
    """A spool copy of a clip already stored (a re-dock, a duplicate docked at another station,
    a crash after the catalog was updated): removed once the stored object verifies."""
    if clip.state != ClipState.STORED:
        return False
    path = station.spool.path_of(clip.sha256)
    if not path.exists():
        return False
    stored = station.store.verify(clip.sha256)
    check_digest(clip.sha256, stored.sha256, f"stored copy of clip {clip.id}")
    station.spool.remove(clip.sha256)
    log.info("spool copy of stored clip %s reclaimed", clip.id)
    return True


# --- the queue ---------------------------------------------------------------------------------


def store_pending(station: Station, *, concurrency: int = STORE_CONCURRENCY) -> StoreReport:
    """The upload queue's retry: store every clip of this station still in the spool (after an
    outage or a crash), biggest first, `concurrency` clips at a time; reclaim spool copies of
    clips stored meanwhile; sign and publish the custody checkpoints; check the spool's space.

    When the store cannot be reached (or fails its self-test) no further clip is started: every
    clip not stored stays in the spool (in `failed`, with the message), `unavailable` says why,
    and the next retry starts over."""
    me = station.settings.station_id
    local = set(station.spool.pending())
    with station.reading() as session:
        spooled = list(
            session.exec(
                select(Clip.sha256, Clip.station_id)
                .where(Clip.state == ClipState.SPOOLED)
                .order_by(col(Clip.size).desc(), col(Clip.ingested_at), col(Clip.id))
            )
        )
    # Biggest first: the small clips then fill in beside the big ones and the batch ends sooner.
    # (Order is not a matter of evidence here: every clip is already durable in the spool.)
    mine = [sha for sha, owner in spooled if owner == me]
    others = {sha for sha, owner in spooled if owner != me}
    away = threading.Event()

    def attempt(sha256: str) -> tuple[bool, str | None, EvidenceError | None]:
        """(started, clip id when stored, error)"""
        if away.is_set():
            return False, None, None  # the store went away meanwhile
        try:
            return True, store_clip(station, sha256), None
        except EvidenceError as e:
            if isinstance(e, _STORE_AWAY):
                away.set()
            return True, None, e

    with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="store") as pool:
        outcomes = list(pool.map(attempt, mine))

    report = StoreReport()
    reason: EvidenceError | None = None
    not_started: list[str] = []
    for sha256, (started, clip_id, error) in zip(mine, outcomes, strict=True):
        if not started:
            not_started.append(sha256)
        elif clip_id is not None:
            report.stored.append(clip_id)
        elif error is None:
            continue  # nothing to do here (stored meanwhile, or another worker has it)
        elif isinstance(error, _STORE_AWAY):
            reason = reason or error
            not_started.append(sha256)
        else:
            _record_failure(report, sha256, error)
    if reason is not None:
        station.store_away.mark(station.store, str(reason))
        report.unavailable = str(reason)
        kept = _kept_message(reason)
        report.failed.update(dict.fromkeys(not_started, kept))
        log.warning("%d clip(s) stay in the spool: %s", len(not_started), kept)
    elif mine:
        station.store_away.clear(station.store)
    report.waiting = len(report.failed) + len(report.integrity_failures)
    if report.stored:
        # The clip.stored events are signed now, as a dock's events are at its end.
        with station.transaction() as session:
            station.custody.checkpoint(session)
    if report.unavailable is None:
        _reclaim_leftovers(station, local - set(mine) - others, report)
        report.checkpoints = publish_checkpoints(station, force=True)
    report.spool = watch_spool_space(station)
    return report


def _record_failure(report: StoreReport, sha256: str, e: EvidenceError) -> None:
    if isinstance(e, IntegrityError):
        report.integrity_failures[sha256] = e.message
        log.error("integrity failure storing %s: %s", sha256, e.message)
    else:
        report.failed[sha256] = str(e)
        log.warning("clip %s stays in the spool: %s", sha256[:12], e)


def _reclaim_leftovers(station: Station, candidates: set[str], report: StoreReport) -> None:
    """Spool copies that no clip of this station waits on. Copies of stored clips go once the
    store verifies them; a copy without a clip row (a dock still cataloguing it, or a crash
    before its row was written) is never touched: it is evidence the catalog does not know."""
    for sha256 in sorted(candidates):
        clip = _load(station, [sha256]).get(sha256)
        if clip is None or clip.state != ClipState.STORED:
            continue
        try:
            if _reclaim_if_stored(station, clip):
                report.reclaimed.append(sha256)
        except EvidenceError as e:
            _record_failure(report, sha256, e)


class StoreWorker:
    """A thread that stores clips as ingest catalogues them, so storing overlaps copying.

    While the station's store is away (unreachable in the last AWAY_SECONDS, store_state.py)
    submitted clips are left in the spool at once, with a message, instead of each waiting out
    the client's retries: `store_pending` (the daemon's periodic retry, or `evidence-agent
    store`) uploads them."""

    def __init__(self, station: Station) -> None:
        self.station = station
        self.report = StoreReport()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="store-worker", daemon=True)

    def start(self) -> StoreWorker:
        self._thread.start()
        return self

    def submit(self, sha256: str) -> None:
        self._queue.put(sha256)

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            # every clip waiting is stored in one go: one commit marks them all stored
            batch = [first]
            last = False
            with contextlib.suppress(queue.Empty):
                while len(batch) < _WORKER_BATCH:
                    sha256 = self._queue.get_nowait()
                    if sha256 is None:
                        last = True
                        break
                    batch.append(sha256)
            self._store(batch)
            if last:
                return

    def _store(self, batch: list[str]) -> None:
        store = self.station.store
        away = self.station.store_away.reason(store)
        if away is not None:
            for sha256 in batch:
                self.report.failed[sha256] = _left_message(away)
            return
        outcomes = store_clips(self.station, batch)
        found_away: EvidenceError | None = None
        for sha256, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, _STORE_AWAY):
                if found_away is None:  # the clip that found the store away
                    found_away = outcome
                    self.station.store_away.mark(store, str(outcome))
                    self.report.failed[sha256] = _kept_message(outcome)
                    log.warning(
                        "clip %s stays in the spool: %s", sha256[:12], _kept_message(outcome)
                    )
                else:  # not tried after it
                    self.report.failed[sha256] = _left_message(str(found_away))
            elif isinstance(outcome, EvidenceError):
                _record_failure(self.report, sha256, outcome)
            elif outcome is not None:
                self.report.stored.append(outcome)
        if found_away is None and not all(isinstance(o, EvidenceError) for o in outcomes):
            self.station.store_away.clear(store)

    def finish(self) -> StoreReport:
        """Wait for everything submitted to be stored (or to fail) and stop the thread."""
        self._queue.put(None)
        self._thread.join()
        if self.report.stored:
            # The clip.stored events are signed now, not left for the next checkpoint.
            with self.station.transaction() as session:
                self.station.custody.checkpoint(session)
            publish_checkpoints(self.station)
        return self.report
