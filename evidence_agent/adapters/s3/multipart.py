"""Multipart upload of a big clip: parts sent in parallel with their SHA-256, resumed from a state file."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import math
import random
import time
from collections.abc import Callable, MutableMapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from evidence_agent.adapters.s3.checksums import (
    PART_SIZE_METADATA,
    MiB,
    b64,
    composite_sha256,
    same,
)
from evidence_agent.adapters.s3.client import (
    DIGEST_CODES,
    BucketClient,
    ServerSaid,
    compliance_lock,
)
from evidence_agent.adapters.s3.errors import StoreUnavailableError
from evidence_agent.adapters.s3.upload import stored_by_someone_else, unreadable_spool
from evidence_agent.adapters.s3.verify import verify_object
from evidence_agent.errors import EvidenceError, IntegrityError, StorageError
from evidence_agent.io.atomic import write_atomically
from evidence_agent.ports import StoredObject

log = logging.getLogger(__name__)

DEFAULT_PART_SIZE = 8 * MiB  # with 8 parts in flight: 64 MiB of buffers per upload
MIN_PART_SIZE = 5 * MiB  # S3's floor for every part but the last (SeaweedFS enforces it too)
MAX_PARTS = 10_000
STATE_FORMAT = "evidence-agent.s3-multipart/1"

PartResult = tuple[int, str, str]  # part number, ETag, base64 SHA-256 the server validated
ServerPart = tuple[str, int, str | None]  # ETag, size, base64 SHA-256 when the server lists one


@dataclass(frozen=True)
class PartProgress:
    """One part of a multipart upload is on the server (`reused`: from an earlier, interrupted run)."""

    number: int
    total: int
    size: int
    reused: bool


OnPart = Callable[[PartProgress], None]


@dataclass
class UploadState:
    """What survives a restart: the upload id and the parts the server confirmed with their digests."""

    bucket: str
    key: str
    sha256: str
    size: int
    part_size: int
    upload_id: str
    parts: dict[int, tuple[str, str]]  # number -> (ETag, base64 SHA-256 the server validated)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": STATE_FORMAT,
                "bucket": self.bucket,
                "key": self.key,
                "sha256": self.sha256,
                "size": self.size,
                "part_size": self.part_size,
                "upload_id": self.upload_id,
                "parts": {
                    str(n): {"etag": etag, "checksum_sha256": checksum}
                    for n, (etag, checksum) in sorted(self.parts.items())
                },
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> UploadState:
        raw = json.loads(text)
        if raw.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown format {raw.get('format')!r}")
        return cls(
            bucket=str(raw["bucket"]),
            key=str(raw["key"]),
            sha256=str(raw["sha256"]),
            size=int(raw["size"]),
            part_size=int(raw["part_size"]),
            upload_id=str(raw["upload_id"]),
            parts={
                int(n): (str(p["etag"]), str(p["checksum_sha256"])) for n, p in raw["parts"].items()
            },
        )


def reusable(
    recorded: tuple[str, str] | None,
    on_server: ServerPart | None,
    part_digest: bytes,
    part_len: int,
) -> bool:
    """A part from an earlier run counts only if the server still has it as recorded and its
    recorded SHA-256 is that of the same bytes in the spool file now."""
    if recorded is None or on_server is None:
        return False
    etag, checksum = recorded
    server_etag, server_size, server_checksum = on_server
    return (
        server_etag == etag
        and server_size == part_len
        and same(checksum, b64(part_digest))
        and (server_checksum is None or same(server_checksum, checksum))
    )


@dataclass
class _Upload:
    """One clip's multipart upload in progress: where it goes and how its parts are cut."""

    sha256: str
    digest: bytes
    key: str
    source: Path
    size: int
    until: datetime
    state_file: Path
    on_part: OnPart | None
    part_size: int
    total: int = field(init=False)

    def __post_init__(self) -> None:
        self.total = math.ceil(self.size / self.part_size)

    def expected_len(self, number: int) -> int:
        return min(self.part_size, self.size - (number - 1) * self.part_size)

    def changed(self, how: str) -> IntegrityError:
        return IntegrityError(
            f"spool file {self.source} is {how} than the {self.size} bytes recorded at ingest",
            remedy="the spool copy changed; do not clear the recorder, re-ingest from it",
        )


class MultipartUploader:
    """Uploads a clip in parts, each carrying its own SHA-256, resumable after an interruption.

    The state file records the upload id and the parts the server confirmed, so a later call
    (after the store went away, or a crash) sends only the parts missing. The whole file is
    hashed on the way and must equal the ingest SHA-256, and the server's composite checksum
    must equal the one computed from the parts sent; that composite is then kept in
    `composites` for the verification that follows the upload (verify.py, step 3)."""

    def __init__(
        self,
        s3: BucketClient,
        *,
        part_size: int,
        max_concurrency: int,
        resume_attempts: int,
        resume_backoff: float,
    ) -> None:
        self._s3 = s3
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        self.resume_attempts = resume_attempts
        self.resume_backoff = resume_backoff
        # sha256 -> composite checksum of uploads this object completed and checked, until
        # verification has used it.
        self.composites: MutableMapping[str, str] = {}

    def part_size_for(self, size: int) -> int:
        return max(self.part_size, math.ceil(size / MAX_PARTS))

    def put(
        self,
        sha256: str,
        digest: bytes,
        key: str,
        source: Path,
        size: int,
        until: datetime,
        state_file: Path,
        on_part: OnPart | None,
    ) -> StoredObject:
        """Upload, starting over from the state file up to `resume_attempts` times while the
        store is away, waiting `resume_backoff` * 2**n seconds (jittered) in between."""
        upload = _Upload(
            sha256, digest, key, source, size, until, state_file, on_part, self.part_size_for(size)
        )
        attempt = 0
        while True:
            try:
                return self._attempt(upload)
            except StoreUnavailableError:
                attempt += 1
                if attempt > self.resume_attempts:
                    raise
                delay = self.resume_backoff * 2 ** (attempt - 1) * (0.5 + random.random())  # noqa: S311
                log.warning(
                    "upload of %s interrupted; resuming from %s in %.1fs (attempt %d of %d)",
                    sha256,
                    state_file,
                    delay,
                    attempt,
                    self.resume_attempts,
                )
                time.sleep(delay)

    def _attempt(self, upload: _Upload) -> StoredObject:
        state, server_parts = self._open(upload)
        whole = self._send_parts(upload, state, server_parts)
        if not hmac.compare_digest(whole, upload.digest):
            self._abort_quietly(upload.key, state.upload_id)
            self.forget(upload.state_file, abort=False)
            raise IntegrityError(
                f"spool file {upload.source} hashes to {whole.hex()}, not the SHA-256 recorded "
                f"at ingest ({upload.sha256}); the upload was abandoned",
                remedy="the spool copy is corrupt or changed; do not clear the recorder, re-ingest from it",
            )
        # Every part's SHA-256 is of the local bytes: computed by its upload thread, or checked
        # against the state file before a part from an earlier run was reused.
        part_digests = [base64.b64decode(state.parts[n][1]) for n in range(1, upload.total + 1)]
        response = self._complete(upload, state)
        if isinstance(response, StoredObject):
            return response
        self.forget(upload.state_file, abort=False)
        if self._s3.flexible:
            self._check_composite(upload, response, composite_sha256(part_digests))
        log.info(
            "stored %s (%d bytes, %d parts) in %s",
            upload.sha256,
            upload.size,
            upload.total,
            self._s3.describe(),
        )
        return StoredObject(key=upload.key, size=upload.size, sha256=upload.sha256)

    # -- the upload and its state file -------------------------------------------------------

    def _open(self, upload: _Upload) -> tuple[UploadState, dict[int, ServerPart]]:
        """The upload recorded in the state file and the parts the server still holds for it,
        or a new upload (recorded durably before any part is sent)."""
        state = self._load_state(upload)
        if state is not None:
            listed = self._server_parts(upload.key, state.upload_id)
            if listed is not None:
                log.info(
                    "resuming upload of %s: %d of %d parts already on the server",
                    upload.sha256,
                    len(listed),
                    upload.total,
                )
                return state, listed
            log.info(
                "multipart upload %s of %s is gone; starting over", state.upload_id, upload.key
            )
            self.forget(upload.state_file, abort=False)
        create_args: dict[str, Any] = {"ChecksumAlgorithm": "SHA256"} if self._s3.flexible else {}
        response = self._s3.call(
            "start uploading",
            upload.key,
            self._s3.client.create_multipart_upload,
            Bucket=self._s3.bucket,
            Key=upload.key,
            ContentType="application/octet-stream",
            Metadata={PART_SIZE_METADATA: str(upload.part_size)},
            **compliance_lock(upload.until),
            **create_args,
        )
        state = UploadState(
            self._s3.bucket,
            upload.key,
            upload.sha256,
            upload.size,
            upload.part_size,
            str(response["UploadId"]),
            {},
        )
        self._save_state(upload.state_file, state)
        return state, {}

    def _load_state(self, upload: _Upload) -> UploadState | None:
        try:
            state = UploadState.from_json(upload.state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("ignoring unreadable upload state %s: %s", upload.state_file, e)
            return None
        if (state.bucket, state.key, state.sha256, state.size, state.part_size) != (
            self._s3.bucket,
            upload.key,
            upload.sha256,
            upload.size,
            upload.part_size,
        ):
            log.warning("upload state %s is for another upload; starting over", upload.state_file)
            self._abort_quietly(state.key, state.upload_id, state.bucket)
            return None
        return state

    def _save_state(self, state_file: Path, state: UploadState, *, durable: bool = True) -> None:
        try:
            write_atomically(
                state_file, state.to_json().encode("utf-8"), mode=0o600, durable=durable
            )
        except OSError as e:
            raise StorageError(
                f"cannot write upload state {state_file}: {e.strerror}",
                remedy="check free space and permissions in the spool directory",
            ) from e

    def forget(self, state_file: Path, *, abort: bool) -> None:
        """Remove the state file; `abort` also ends the upload it records on the server."""
        if abort and state_file.exists():
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
                old = UploadState.from_json(state_file.read_text(encoding="utf-8"))
                self._abort_quietly(old.key, old.upload_id, old.bucket)
        with contextlib.suppress(FileNotFoundError):
            state_file.unlink()

    def _abort_quietly(self, key: str, upload_id: str, bucket: str | None = None) -> None:
        """Best effort: an upload left behind only costs space until the bucket's lifecycle ends it."""
        try:
            self._s3.client.abort_multipart_upload(
                Bucket=bucket or self._s3.bucket, Key=key, UploadId=upload_id
            )
        except (ClientError, BotoCoreError) as e:
            log.debug("could not abort multipart upload %s of %s: %s", upload_id, key, e)

    def _server_parts(self, key: str, upload_id: str) -> dict[int, ServerPart] | None:
        """Parts the server holds for the upload (None when the upload is gone)."""
        parts: dict[int, ServerPart] = {}
        marker = 0
        while True:
            try:
                page = self._s3.call(
                    "list the uploaded parts of",
                    key,
                    self._s3.client.list_parts,
                    handle=frozenset({"NoSuchUpload", "404"}),
                    Bucket=self._s3.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumberMarker=marker,
                )
            except ServerSaid:
                return None
            for p in page.get("Parts", []):
                # SeaweedFS lists no per-part checksum; AWS does. Either way the state file has
                # the one the server confirmed when the part went up.
                parts[int(p["PartNumber"])] = (
                    str(p["ETag"]),
                    int(p["Size"]),
                    p.get("ChecksumSHA256"),
                )
            if not page.get("IsTruncated"):
                return parts
            marker = int(page["NextPartNumberMarker"])

    # -- the parts ---------------------------------------------------------------------------

    def _send_parts(
        self, upload: _Upload, state: UploadState, server_parts: dict[int, ServerPart]
    ) -> bytes:
        """Read the spool file once, part by part, sending each part the server lacks; returns
        the SHA-256 of the whole file."""
        recorder = _PartRecorder(
            upload, state, lambda: self._save_state(upload.state_file, state, durable=False)
        )
        try:
            with (
                upload.source.open("rb") as f,
                ThreadPoolExecutor(
                    max_workers=self.max_concurrency, thread_name_prefix="s3-part"
                ) as pool,
            ):
                try:
                    whole = self._read_and_submit(upload, state, server_parts, f, pool, recorder)
                    recorder.record(recorder.wait_all())
                except BaseException:
                    # Parts already in flight finish; keep them in the state file for the resume.
                    recorder.cancel_pending()
                    with contextlib.suppress(EvidenceError):
                        recorder.record(recorder.wait_all(), notify=False)
                    raise
        except OSError as e:
            raise unreadable_spool(upload.source, e) from e
        return whole

    def _read_and_submit(
        self,
        upload: _Upload,
        state: UploadState,
        server_parts: dict[int, ServerPart],
        f: BinaryIO,
        pool: ThreadPoolExecutor,
        recorder: _PartRecorder,
    ) -> bytes:
        whole = hashlib.sha256()
        for number in range(1, upload.total + 1):
            data = f.read(upload.part_size)
            if len(data) != upload.expected_len(number):
                raise upload.changed("shorter")
            whole.update(data)
            recorder.sizes[number] = len(data)
            # A part's own SHA-256 is computed here only to decide on reusing it; otherwise its
            # upload thread computes it, beside this thread's hash of the whole file (hashlib
            # releases the GIL): each byte is hashed twice, in parallel, and read once.
            part_digest: bytes | None = None
            recorded, on_server = state.parts.get(number), server_parts.get(number)
            if recorded is not None and on_server is not None:
                part_digest = hashlib.sha256(data).digest()
                if reusable(recorded, on_server, part_digest, len(data)):
                    if upload.on_part is not None:
                        upload.on_part(PartProgress(number, upload.total, len(data), reused=True))
                    continue
            recorder.wait_for_room(self.max_concurrency)
            recorder.pending.add(
                pool.submit(
                    self._upload_part, upload.key, state.upload_id, number, data, part_digest
                )
            )
        if f.read(1):
            raise upload.changed("longer")
        return whole.digest()

    def _upload_part(
        self, key: str, upload_id: str, number: int, data: bytes, part_digest: bytes | None
    ) -> PartResult:
        if part_digest is None:
            part_digest = hashlib.sha256(data).digest()
        if self._s3.flexible:
            checksum: dict[str, Any] = {
                "ChecksumAlgorithm": "SHA256",
                "ChecksumSHA256": b64(part_digest),
            }
        else:
            checksum = {"ContentMD5": b64(hashlib.md5(data, usedforsecurity=False).digest())}
        try:
            response = self._s3.call(
                f"upload part {number} of",
                key,
                self._s3.client.upload_part,
                handle=frozenset(DIGEST_CODES),
                Bucket=self._s3.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ContentLength=len(data),
                **checksum,
            )
        except ServerSaid as e:
            raise IntegrityError(
                f"the object store received part {number} of {self._s3.where(key)} with a "
                f"different checksum than it was sent with ({e.code})",
                remedy="the bytes were damaged in transit; the upload resumes with this part on "
                "the next attempt",
            ) from e.error
        reported: str | None = response.get("ChecksumSHA256")
        if self._s3.flexible and reported is not None and not same(reported, b64(part_digest)):
            raise IntegrityError(
                f"the object store reports SHA-256 {reported} for part {number} of "
                f"{self._s3.where(key)}, not the {b64(part_digest)} it was sent",
                remedy="the store did not keep what it accepted; report it",
            )
        return number, str(response["ETag"]), b64(part_digest)

    # -- completion --------------------------------------------------------------------------

    def _complete(self, upload: _Upload, state: UploadState) -> dict[str, Any] | StoredObject:
        """Complete the upload unless an object is under the key by then: the server's answer,
        or the stored object when another writer's equal object is there."""
        parts_list: list[dict[str, Any]] = []
        for number in range(1, upload.total + 1):
            etag, checksum = state.parts[number]
            entry: dict[str, Any] = {"PartNumber": number, "ETag": etag}
            if self._s3.flexible:
                entry["ChecksumSHA256"] = checksum
            parts_list.append(entry)
        try:
            response: dict[str, Any] = self._s3.call(
                "complete the upload of",
                upload.key,
                self._s3.client.complete_multipart_upload,
                handle=frozenset(
                    {"PreconditionFailed", "NoSuchUpload", "InvalidPart", "InvalidPartOrder"}
                ),
                Bucket=self._s3.bucket,
                Key=upload.key,
                UploadId=state.upload_id,
                MultipartUpload={"Parts": parts_list},
                IfNoneMatch="*",
            )
        except ServerSaid as e:
            if e.code == "PreconditionFailed":
                self.forget(upload.state_file, abort=True)
                return stored_by_someone_else(self._s3, upload.sha256, upload.key, upload.until)
            if e.code == "NoSuchUpload" and self._s3.head(upload.key) is not None:
                # A retried complete whose first attempt succeeded before the connection dropped.
                self.forget(upload.state_file, abort=False)
                return stored_by_someone_else(self._s3, upload.sha256, upload.key, upload.until)
            # The server does not recognise the parts recorded: start over from scratch.
            self.forget(upload.state_file, abort=True)
            raise StoreUnavailableError(
                f"the object store lost track of the multipart upload of "
                f"{self._s3.where(upload.key)} ({e.code})",
                remedy="the upload starts over on the next attempt",
            ) from e.error
        return response

    def _check_composite(self, upload: _Upload, response: dict[str, Any], local: str) -> None:
        """The server's composite checksum must be the one the parts sent make."""
        reported: str | None = response.get("ChecksumSHA256")
        if reported is None:
            head = self._s3.head(upload.key, "verify")
            reported = head.get("ChecksumSHA256") if head else None
        if reported is None:
            # No composite to compare: fall back to the honest, slow check.
            verify_object(
                self._s3, upload.sha256, read_back=True, uploaded_composites=self.composites
            )
        elif not same(reported, local):
            raise IntegrityError(
                f"the object store reports composite checksum {reported} for "
                f"{self._s3.where(upload.key)}, but the parts sent make {local}",
                remedy="the stored object does not match the spool file; keep the spool copy and report it",
            )
        else:
            self.composites[upload.sha256] = reported


class _PartRecorder:
    """The parts in flight of one attempt. Runs on the uploading thread only: no lock needed.

    The results of finished parts go to the state file first, then to the caller's callback."""

    def __init__(self, upload: _Upload, state: UploadState, save: Callable[[], None]) -> None:
        self._upload = upload
        self._state = state
        # Not fsynced: after a crash an older state only means parts are sent again; the
        # upload id itself was made durable when the upload started.
        self._save = save
        self.sizes: dict[int, int] = {}
        self.pending: set[Future[PartResult]] = set()

    def wait_for_room(self, limit: int) -> None:
        while len(self.pending) >= limit:
            done, self.pending = wait(self.pending, return_when=FIRST_COMPLETED)
            self.record(done)

    def wait_all(self) -> set[Future[PartResult]]:
        done, self.pending = wait(self.pending).done, set()
        return done

    def cancel_pending(self) -> None:
        for fut in self.pending:
            fut.cancel()

    def record(self, done: set[Future[PartResult]], *, notify: bool = True) -> None:
        failures: list[BaseException] = []
        finished: list[int] = []
        for fut in done:
            if fut.cancelled():
                continue
            error = fut.exception()
            if error is not None:
                failures.append(error)
                continue
            number, etag, checksum = fut.result()
            self._state.parts[number] = (etag, checksum)
            finished.append(number)
        if finished:
            self._save()
        on_part = self._upload.on_part
        if notify and on_part is not None:
            for number in sorted(finished):
                on_part(PartProgress(number, self._upload.total, self.sizes[number], reused=False))
        if failures and notify:
            raise failures[0]
