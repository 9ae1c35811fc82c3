"""The scan worker: every version waiting for a virus scan is scanned once, whatever happens.

The database is the queue: a `FileVersion` with `scan_status` pending whose `next_scan_at` is
due (null = now). `file.version_created` on the bus only wakes the worker early; it also polls,
so a version whose event was missed, or whose process died mid-scan, is still scanned.

Claiming: one conditional UPDATE per version (`... WHERE scan_status = 'pending' AND
(next_scan_at IS NULL OR next_scan_at <= now)` setting `next_scan_at` to a lease in the
future and counting the attempt). The database grants it to one worker of however many hub
processes run; the attempt number is the claim's token, so a scan that outlived its lease (and
was taken over) cannot write its verdict over the new owner's.

Outcomes:
- clean: `clean`, `scanned_at`; `file.scanned`.
- infected: `infected` with the signature (quarantined: never downloadable); `file.scanned`,
  a security log row and `security.event` {kind: file_infected}, and an inbox entry for every
  active user who may read any file (`notification.created`).
- clamd unreachable (`ScannerUnavailable`), or the blob store failing mid-read: stays
  `pending`; the next try waits `retry_seconds` doubled per attempt, with jitter, at most an
  hour. Nothing is ever marked clean without a scan.
- clamd answered ERROR (`ScanFailed`, e.g. the stream exceeded StreamMaxLength) or the blob
  is gone: `failed` (never downloadable); `file.scanned` and `security.event` {kind:
  scan_failed}.

With no scanner configured (`NullScanner`), versions are created `unscanned`; the worker
announces each once (`file.scanned` with status `unscanned`), woken by `file.version_created`
or by its poll, claimed the same way (`scan_attempts` 0 -> 1, so one hub of several announces
it); pending versions are left alone (they wait for a real scanner, never pass unscanned).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

from tortoise.expressions import F, Q

from core.bus import Event, EventBus, Subscription
from core.clock import utcnow
from core.logs import get_logger
from core.permissions import Permission, Role, has_permission
from db.models.chat import Notification
from db.models.files import File, FileVersion, ScanStatus
from db.models.identity import SecurityEvent, User
from storage.blobs import BlobNotFoundError, BlobStore
from storage.scan import NullScanner, ScanFailed, Scanner, ScannerUnavailable, ScanResult

log = get_logger(__name__)

MAX_BACKOFF_SECONDS = 3600.0
DEFAULT_LEASE_SECONDS = 900.0
DEFAULT_POLL_SECONDS = 30.0
DEFAULT_BATCH_SIZE = 20
DEFAULT_CONCURRENCY = 2
NOTIFICATION_TYPE = "file.infected"


@dataclass(frozen=True)
class ScanOutcome:
    """What one claimed scan came to. `status` is the version's status afterwards (pending
    when it will be retried at `next_scan_at`)."""

    version_id: UUID
    file_id: UUID
    status: ScanStatus
    signature: str | None = None
    attempts: int = 0
    next_scan_at: datetime | None = None
    reason: str | None = None


def retry_delay(attempts: int, *, base_seconds: float, rng: random.Random | None = None) -> float:
    """Seconds before retry number `attempts` + 1: `base_seconds` doubled per attempt made,
    at most an hour, with "equal jitter" (between half and all of that) so that workers
    that lost clamd together do not come back together."""
    ceiling = min(MAX_BACKOFF_SECONDS, base_seconds * 2.0 ** max(attempts - 1, 0))
    jitter: float = (rng or random).uniform(0, ceiling / 2)
    return ceiling / 2 + jitter


def _due(now: datetime) -> Q:
    return Q(scan_status=ScanStatus.PENDING) & (
        Q(next_scan_at__isnull=True) | Q(next_scan_at__lte=now)
    )


class ScanWorker:
    """Scans due versions in the background (`start`/`stop`), or one batch on demand
    (`scan_due`)."""

    def __init__(
        self,
        *,
        store: BlobStore,
        scanner: Scanner,
        bus: EventBus,
        retry_seconds: float,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self.store = store
        self.scanner = scanner
        self.bus = bus
        self.retry_seconds = retry_seconds
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.batch_size = batch_size
        self._limit = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None

    @property
    def scanning(self) -> bool:
        """False with the `NullScanner` of the embedded mode."""
        return not isinstance(self.scanner, NullScanner)

    async def start(self) -> None:
        self._subscription = await self.bus.subscribe("file.version_created", self._on_created)
        self._task = asyncio.create_task(self._run(), name="scan-worker")

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _on_created(self, event: Event) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            # Cleared before the batch, not after: news that arrives while a batch runs keeps
            # the event set, so the wait below returns at once instead of missing it.
            self._wake.clear()
            try:
                outcomes = await self.scan_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database went away: log, wait, try again
                log.exception("scan.batch_failed")
                outcomes = []
            if len(outcomes) >= self.batch_size:
                continue  # there may be more due right now
            idle = await self._idle_seconds()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), idle)

    async def _idle_seconds(self) -> float:
        """Until the next retry falls due, at most `poll_seconds`."""
        try:
            upcoming = cast(
                "list[datetime]",
                await FileVersion.filter(scan_status=ScanStatus.PENDING, next_scan_at__isnull=False)
                .order_by("next_scan_at")
                .limit(1)
                .values_list("next_scan_at", flat=True),
            )
        except Exception:  # noqa: BLE001 - a failed look-ahead just means a full poll
            return self.poll_seconds
        if not upcoming:
            return self.poll_seconds
        seconds = (upcoming[0] - utcnow()).total_seconds()
        return min(self.poll_seconds, max(seconds, 0.05))

    async def scan_due(self, *, now: datetime | None = None) -> list[ScanOutcome]:
        """Claim and scan one batch of due versions (oldest first); return what became of
        each one this worker claimed (versions claimed by another worker are left out)."""
        if not self.scanning:
            return await self._announce_unscanned()
        now = now or utcnow()
        ids = cast(
            "list[UUID]",
            await FileVersion.filter(_due(now))
            .order_by("created_at", "id")
            .limit(self.batch_size)
            .values_list("id", flat=True),
        )
        outcomes: list[ScanOutcome | None] = await asyncio.gather(
            *(self._claim_and_scan(version_id, now) for version_id in ids)
        )
        return [outcome for outcome in outcomes if outcome is not None]

    async def _announce_unscanned(self) -> list[ScanOutcome]:
        """`file.scanned` {status: unscanned} once for each version created without a scanner.
        Every hub hears `file.version_created`: the first to move the version's
        `scan_attempts` from 0 to 1 announces it, the others find it taken."""
        ids = cast(
            "list[UUID]",
            await FileVersion.filter(scan_status=ScanStatus.UNSCANNED, scan_attempts=0)
            .order_by("created_at", "id")
            .limit(self.batch_size)
            .values_list("id", flat=True),
        )
        outcomes = []
        for version_id in ids:
            claimed = await FileVersion.filter(
                id=version_id, scan_status=ScanStatus.UNSCANNED, scan_attempts=0
            ).update(scan_attempts=1)
            if not claimed:
                continue
            version = await FileVersion.get(id=version_id)
            file = await File.get(id=version.file_id)  # type: ignore[attr-defined]
            await self._emit_scanned(version, file, ScanStatus.UNSCANNED, None)
            outcomes.append(
                ScanOutcome(
                    version_id=version.id, file_id=file.id, status=ScanStatus.UNSCANNED, attempts=1
                )
            )
        return outcomes

    async def _claim_and_scan(self, version_id: UUID, now: datetime) -> ScanOutcome | None:
        async with self._limit:
            lease = utcnow() + timedelta(seconds=self.lease_seconds)
            claimed = await FileVersion.filter(_due(now), id=version_id).update(
                next_scan_at=lease, scan_attempts=F("scan_attempts") + 1
            )
            if not claimed:
                return None  # another worker has it
            version = await FileVersion.get(id=version_id)
            try:
                return await self._scan(version)
            except asyncio.CancelledError:  # shutting down: let the next worker take it now
                await asyncio.shield(self._settle(version, next_scan_at=None))
                raise

    async def _scan(self, version: FileVersion) -> ScanOutcome:
        attempt = version.scan_attempts
        try:
            async with aclosing(self._read(version.blob_key)) as chunks:
                result = await self.scanner.scan(chunks)
        except ScanFailed as exc:
            return await self._failed(version, reason=exc.message)
        except BlobNotFoundError:
            return await self._failed(version, reason="blob_missing")
        except (ScannerUnavailable, OSError) as exc:
            return await self._retry(version, reason=str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a store client error mid-read: retry, never pass the file
            log.exception("scan.unexpected_error", version_id=str(version.id))
            return await self._retry(version, reason=type(exc).__name__)
        if not result.scanned:  # a scanner that did not look: cannot count as clean
            return await self._retry(version, reason="not_scanned")
        return await self._verdict(version, attempt, result)

    async def _read(self, key: str) -> AsyncGenerator[bytes, None]:
        """The blob's bytes, opened only once the scanner reads (a scanner that cannot
        connect leaves no open file behind)."""
        async with aclosing(await self.store.open(key)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def _settle(self, version: FileVersion, **changes: Any) -> bool:
        """Write the outcome only while our claim holds (pending, our attempt number)."""
        updated = await FileVersion.filter(
            id=version.id, scan_status=ScanStatus.PENDING, scan_attempts=version.scan_attempts
        ).update(**changes)
        if not updated:
            log.warning("scan.claim_lost", version_id=str(version.id))
        return bool(updated)

    async def _verdict(self, version: FileVersion, attempt: int, result: ScanResult) -> ScanOutcome:
        status = ScanStatus.CLEAN if result.clean else ScanStatus.INFECTED
        signature = None if result.clean else (result.signature or "unknown")[:200]
        now = utcnow()
        settled = await self._settle(
            version, scan_status=status, scan_signature=signature, scanned_at=now, next_scan_at=None
        )
        outcome = ScanOutcome(
            version_id=version.id,
            file_id=version.file_id,  # type: ignore[attr-defined]
            status=status,
            signature=signature,
            attempts=attempt,
        )
        if not settled:
            return outcome
        file = await File.get(id=version.file_id)  # type: ignore[attr-defined]
        log.info("scan.done", version_id=str(version.id), status=status.value, signature=signature)
        await self._emit_scanned(version, file, status, signature)
        if status is ScanStatus.INFECTED:
            await self._report(version, file, kind="file_infected", signature=signature)
            await self._notify_staff(version, file, signature or "")
        return outcome

    async def _failed(self, version: FileVersion, *, reason: str) -> ScanOutcome:
        outcome = ScanOutcome(
            version_id=version.id,
            file_id=version.file_id,  # type: ignore[attr-defined]
            status=ScanStatus.FAILED,
            attempts=version.scan_attempts,
            reason=reason,
        )
        if not await self._settle(
            version, scan_status=ScanStatus.FAILED, scanned_at=utcnow(), next_scan_at=None
        ):
            return outcome
        log.warning("scan.failed", version_id=str(version.id), reason=reason)
        file = await File.get(id=version.file_id)  # type: ignore[attr-defined]
        await self._emit_scanned(version, file, ScanStatus.FAILED, None)
        await self._report(version, file, kind="scan_failed", reason=reason)
        return outcome

    async def _retry(self, version: FileVersion, *, reason: str) -> ScanOutcome:
        delay = retry_delay(version.scan_attempts, base_seconds=self.retry_seconds)
        next_at = utcnow() + timedelta(seconds=delay)
        await self._settle(version, next_scan_at=next_at)
        log.warning(
            "scan.retry_later",
            version_id=str(version.id),
            attempts=version.scan_attempts,
            retry_in=round(delay, 1),
            reason=reason[:200],
        )
        return ScanOutcome(
            version_id=version.id,
            file_id=version.file_id,  # type: ignore[attr-defined]
            status=ScanStatus.PENDING,
            attempts=version.scan_attempts,
            next_scan_at=next_at,
            reason=reason,
        )

    async def _emit_scanned(
        self, version: FileVersion, file: File, status: ScanStatus, signature: str | None
    ) -> None:
        await self.bus.emit(
            "file.scanned",
            {
                "file_id": str(file.id),
                "version_id": str(version.id),
                "version": version.number,
                "owner_id": str(file.owner_id),  # type: ignore[attr-defined]
                "status": status.value,
                "signature": signature,
            },
            subject=f"file:{file.id}",
        )

    async def _report(self, version: FileVersion, file: File, *, kind: str, **data: Any) -> None:
        """A security log row (what admins read), then `security.event` for the dashboard."""
        owner_id: UUID = file.owner_id  # type: ignore[attr-defined]
        details = {
            "file_id": str(file.id),
            "version_id": str(version.id),
            "version": version.number,
            "owner_id": str(owner_id),
            **data,
        }
        row = await SecurityEvent.create(kind=kind, user_id=owner_id, data=details)
        await self.bus.emit(
            "security.event",
            {"id": str(row.id), "kind": kind, **details},
            subject=f"user:{owner_id}",
        )

    async def _notify_staff(self, version: FileVersion, file: File, signature: str) -> None:
        """An inbox entry for everyone who may read any file, announced as the hub's Inbox
        does (`notification.created` with the entry and its user), so every channel sees it."""
        roles = [role for role in Role if has_permission(role, Permission.FILES_READ_ANY)]
        staff = await User.filter(role__in=roles, is_active=True).values_list("id", flat=True)
        for user_id in staff:
            row = await Notification.create(
                user_id=user_id,
                type=NOTIFICATION_TYPE,
                title=f"Virus found in {file.name}"[:200],
                body=f"Version {version.number} of {file.name} holds {signature}; it is "
                "quarantined and cannot be downloaded.",
                link=f"/files/{file.id}",
                data={
                    "file_id": str(file.id),
                    "version_id": str(version.id),
                    "version": version.number,
                    "owner_id": str(file.owner_id),  # type: ignore[attr-defined]
                    "signature": signature,
                },
            )
            await self.bus.emit(
                "notification.created",
                {
                    "id": str(row.id),
                    "type": row.type,
                    "title": row.title,
                    "body": row.body,
                    "link": row.link,
                    "data": dict(row.data),
                    "created_at": row.created_at.isoformat(),
                    "read": False,
                    "user_id": str(user_id),
                },
                subject=f"user:{user_id}",
            )
