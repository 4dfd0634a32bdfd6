"""The composition root: one station's ports wired together from its settings."""

from __future__ import annotations

import contextlib
import os
import pwd
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from evidence_agent.adapters.station_key import load_or_create_signer, station_exists
from evidence_agent.catalog.custody_log import SqlCustodyLog, log_origin
from evidence_agent.catalog.database import READ_ONLY, migrate, open_engine
from evidence_agent.config import Settings
from evidence_agent.custody.events import CustodyEvent
from evidence_agent.custody.vocabulary import EventType
from evidence_agent.errors import NotFoundError, StorageError
from evidence_agent.io.spool import Spool
from evidence_agent.ports import Clock, Closing, ObjectStore, Prober
from evidence_agent.services.store_state import SelfTestPasses, StoreAvailability


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def user_actor() -> str:
    """The OS user running a command, as custody events name them: from the real uid, never
    from $USER or $LOGNAME, which the caller controls."""
    try:
        return f"user:{pwd.getpwuid(os.getuid()).pw_name}"
    except KeyError:
        return f"uid:{os.getuid()}"


def service_actor(station_id: str) -> str:
    return f"service:evidence-agent@{station_id}"


@dataclass
class Station:
    settings: Settings
    engine: Engine
    spool: Spool
    store: ObjectStore
    prober: Prober
    clock: Clock
    custody: SqlCustodyLog
    actor: str
    # A person's acts (a review command, an enrolment) each end with a signed checkpoint that
    # covers them, so nobody with the database alone can cut or forge one against an auditor
    # who holds the newest checkpoint. Docks sign in batches instead (storing, publish).
    sign_acts: bool = False
    # SQLite has one writer at a time. Threads of this process (docks, their catalogue stages,
    # the store worker) queue here, each woken as the last one commits; SQLite's own busy
    # handler, left for other processes, polls with sleeps of up to 100 ms instead.
    _writer: threading.RLock = field(default_factory=threading.RLock, repr=False)
    # What this station learns of its store as it runs (storing.py, checkpoint_publishing.py,
    # storage_check.py): its own, not the process's, so several stations can live in one process.
    store_away: StoreAvailability = field(default_factory=StoreAvailability, repr=False)
    self_test: SelfTestPasses = field(default_factory=SelfTestPasses, repr=False)
    # One publication of this station's custody checkpoints at a time (checkpoint_publishing.py).
    # Another process, or station, on the same data directory may publish alongside: that only
    # repeats an idempotent write and the best-effort record of what was published.
    publish_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """The one way to change the catalog: everything inside commits together or not at all."""
        with (
            self._writer if self.engine.dialect.name == "sqlite" else contextlib.nullcontext(),
            Session(self.engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session
            if self.sign_acts:
                self.custody.checkpoint(session)  # nothing when no entry was appended

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session that only reads; on SQLite it takes no lock and waits for no writer."""
        with Session(self.engine.execution_options(**{READ_ONLY: True})) as session:
            yield session

    def record(self, session: Session, event: CustodyEvent) -> None:
        self.custody.append(session, event)

    def close(self) -> None:
        if isinstance(self.prober, Closing):
            self.prober.close()  # its worker process
        self.engine.dispose()


def build_store(settings: Settings) -> ObjectStore:
    if settings.store.backend == "s3":
        from evidence_agent.adapters.s3.store import S3ObjectStore  # boto3 is only loaded when used

        return S3ObjectStore(settings.store)
    from evidence_agent.adapters.local_store import LocalObjectStore

    return LocalObjectStore(settings.store.local_dir)


def open_station(
    settings: Settings,
    *,
    actor: str | None = None,
    store: ObjectStore | None = None,
    prober: Prober | None = None,
    clock: Clock | None = None,
    create: bool = True,
    sign_acts: bool = False,
) -> Station:
    """Open (and on first start create) the station's data directory, catalog, spool and key.

    With `create` false a data directory that holds no station is refused: a command run with
    the wrong directory must not quietly make a new station (and signing key) there."""
    if not create and not station_exists(settings.key_dir):
        raise NotFoundError(
            f"no station in {settings.data_dir} (it has no signing key)",
            remedy="set $EVIDENCE_AGENT_DATA_DIR or paths.data_dir to the station's data "
            "directory; a new station is made by its first `run` or `ingest`",
        )
    try:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(
            f"cannot create the data directory {settings.data_dir}: {e.strerror}",
            remedy="set $EVIDENCE_AGENT_DATA_DIR or paths.data_dir to a writable directory",
        ) from e
    engine = open_engine(settings.catalog_url)
    migrate(engine)
    spool = Spool(
        settings.spool_dir, chunk_bytes=settings.ingest.chunk_bytes, sm3=settings.ingest.sm3
    )
    spool.prepare()
    clock = clock or SystemClock()
    signer, created = load_or_create_signer(settings.key_dir, log_origin(settings.station_id))
    if prober is None:
        from evidence_agent.adapters.pyav import PyAVProber  # its worker starts at the first probe

        prober = PyAVProber()
    station = Station(
        settings=settings,
        engine=engine,
        spool=spool,
        store=store or build_store(settings),
        prober=prober,
        clock=clock,
        custody=SqlCustodyLog(settings.station_id, signer, clock),
        actor=actor or user_actor(),
        sign_acts=sign_acts,
    )
    if created:
        with station.transaction() as session:
            station.record(
                session,
                EventType.KEY_CREATED.event(
                    settings.station_id,
                    actor=station.actor,
                    reason="first start of the station: its custody log signing key was made",
                    data={"verifier_key": signer.verifier.key_string()},
                ),
            )
            station.custody.checkpoint(session)
    return station
