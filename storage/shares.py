"""Public share links: `/s/{token}` serves one file (a fixed version, or the current one).

- The token is 256 random bits (`secrets.token_urlsafe(32)`), shown once; only its sha256 is
  stored. Links always expire (default 7 days, at most 90). Optional argon2id password,
  optional download limit, revocable by the file's writers.
- The password travels in the `X-Share-Password` header (or a POSTed form field, see the API).
  Wrong passwords are limited per link and per client address through the shared rate limiter
  (`too_many_attempts`, 429); a locked link stays locked for the window even for the right
  password, so guessing cannot continue.
- Downloads are counted atomically: one `UPDATE ... SET download_count = download_count + 1
  WHERE download_count < max_downloads AND not revoked AND not expired`, so concurrent
  downloads at the limit never over-count. Requests that transfer nothing (304, 416) do not
  count.
- Every use is logged in `ShareAccess` (time, address, user agent, outcome); a token that
  matches no link has no row to log against and goes to the service log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NoReturn
from uuid import UUID

from tortoise.expressions import F, Q

from core.clock import utcnow
from core.errors import AppError, NotFound, RateLimited, Unauthorized, ValidationFailed
from core.logs import get_logger
from core.passwords import hash_password_async, verify_password_async
from core.principal import Principal
from core.rate_limit import Limit, RateLimiter
from core.tokens import digest, new_opaque_token
from db.models.files import File, FileVersion, ShareAccess, ShareLink
from storage.file_access import check_can_write
from storage.versions import check_downloadable, is_downloadable, version_of

log = get_logger(__name__)

DEFAULT_TTL = timedelta(days=7)
MAX_TTL = timedelta(days=90)
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
PASSWORD_FAILURES_PER_LINK = Limit(count=10, window=15 * 60)
PASSWORD_FAILURES_PER_ADDRESS = Limit(count=30, window=15 * 60)


class ShareOutcome(StrEnum):
    OK = "ok"  # a download (200 or 206, or the redirect to the store)
    VIEWED = "viewed"  # the metadata page
    NOT_MODIFIED = "not_modified"
    BAD_RANGE = "range_not_satisfiable"
    EXPIRED = "expired"
    REVOKED = "revoked"
    PASSWORD_REQUIRED = "password_required"  # noqa: S105 (an outcome)
    WRONG_PASSWORD = "wrong_password"  # noqa: S105 (an outcome)
    RATE_LIMITED = "rate_limited"
    LIMIT_REACHED = "limit_reached"
    FILE_DELETED = "file_deleted"
    NOT_SCANNED = "file_not_scanned"
    QUARANTINED = "file_quarantined"
    NOT_FOUND = "not_found"


class ShareGone(AppError):
    status = 410
    default_code = "share_gone"
    default_message = "This link no longer works"


def share_not_found() -> NotFound:
    return NotFound("share_not_found", "No such share link")


@dataclass(frozen=True)
class Visitor:
    ip: str
    user_agent: str


@dataclass(frozen=True)
class ShareCreated:
    link: ShareLink
    token: str  # shown once


@dataclass(frozen=True)
class ShareTarget:
    link: ShareLink
    file: File
    version: FileVersion

    @property
    def downloadable(self) -> bool:
        return is_downloadable(self.version)

    @property
    def downloads_left(self) -> int | None:
        if self.link.max_downloads is None:
            return None
        return max(self.link.max_downloads - self.link.download_count, 0)


async def create_share(
    *,
    principal: Principal,
    file_id: UUID,
    version: int | None,
    expires_in: timedelta | None,
    password: str | None,
    max_downloads: int | None,
) -> ShareCreated:
    file = await check_can_write(principal, file_id)
    if version is not None:
        await version_of(file, version)  # raises version_not_found
    ttl = expires_in or DEFAULT_TTL
    if not timedelta(minutes=1) <= ttl <= MAX_TTL:
        raise ValidationFailed("invalid_expiry", "A link lives from 1 minute to 90 days")
    if max_downloads is not None and max_downloads < 1:
        raise ValidationFailed("invalid_download_limit", "The download limit is at least 1")
    password_hash = None
    if password is not None:
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise ValidationFailed(
                "invalid_share_password",
                f"A link password has {MIN_PASSWORD} to {MAX_PASSWORD} characters",
            )
        password_hash = await hash_password_async(password)
    token = new_opaque_token()
    link = await ShareLink.create(
        file=file,
        version=version,
        token_digest=digest(token),
        created_by_id=principal.user_id,
        expires_at=utcnow() + ttl,
        password_hash=password_hash,
        max_downloads=max_downloads,
    )
    return ShareCreated(link=link, token=token)


async def list_shares(*, principal: Principal, file_id: UUID) -> list[ShareLink]:
    file = await check_can_write(principal, file_id)
    return list(await ShareLink.filter(file_id=file.id).order_by("-created_at", "-id"))


async def _owned_link(principal: Principal, file_id: UUID, share_id: UUID) -> ShareLink:
    file = await check_can_write(principal, file_id)
    link = await ShareLink.get_or_none(id=share_id, file_id=file.id)
    if link is None:
        raise share_not_found()
    return link


async def revoke_share(*, principal: Principal, file_id: UUID, share_id: UUID) -> ShareLink:
    """Revoke (idempotent: a revoked link keeps its first revocation time)."""
    link = await _owned_link(principal, file_id, share_id)
    await ShareLink.filter(id=link.id, revoked_at=None).update(revoked_at=utcnow())
    await link.refresh_from_db()
    return link


async def list_accesses(
    *, principal: Principal, file_id: UUID, share_id: UUID, limit: int, offset: int
) -> list[ShareAccess]:
    link = await _owned_link(principal, file_id, share_id)
    rows = ShareAccess.filter(link_id=link.id).order_by("-at", "-id").offset(offset).limit(limit)
    return list(await rows)


# -- the public side ---------------------------------------------------------------------------


async def _log(link: ShareLink, visitor: Visitor, outcome: ShareOutcome) -> None:
    await ShareAccess.create(
        link=link, ip=visitor.ip[:64], user_agent=visitor.user_agent[:300], outcome=outcome
    )


async def _refuse(
    link: ShareLink, visitor: Visitor, outcome: ShareOutcome, error: AppError
) -> NoReturn:
    await _log(link, visitor, outcome)
    raise error


def _is_expired(link: ShareLink, now: datetime) -> bool:
    return link.expires_at is not None and link.expires_at <= now


async def _check_password(
    link: ShareLink, password: str | None, visitor: Visitor, limiter: RateLimiter
) -> None:
    if link.password_hash is None:
        return
    if not password:
        await _refuse(
            link,
            visitor,
            ShareOutcome.PASSWORD_REQUIRED,
            Unauthorized(
                "share_password_required",
                "This link needs its password",
                details={"password_required": True},
            ),
        )
    link_key = f"share-pw-fail:link:{link.id}"
    address_key = f"share-pw-fail:ip:{visitor.ip}"
    for key, limit in (
        (link_key, PASSWORD_FAILURES_PER_LINK),
        (address_key, PASSWORD_FAILURES_PER_ADDRESS),
    ):
        decision = await limiter.peek(key, limit)
        if not decision.allowed:
            await _refuse(
                link,
                visitor,
                ShareOutcome.RATE_LIMITED,
                RateLimited(
                    "too_many_attempts",
                    "Too many wrong passwords: try again later",
                    details={"retry_after": round(decision.retry_after, 3)},
                ),
            )
    if await verify_password_async(link.password_hash, password[:MAX_PASSWORD]):
        return
    await limiter.hit(link_key, PASSWORD_FAILURES_PER_LINK)
    await limiter.hit(address_key, PASSWORD_FAILURES_PER_ADDRESS)
    await _refuse(
        link,
        visitor,
        ShareOutcome.WRONG_PASSWORD,
        Unauthorized(
            "share_password_wrong",
            "The link's password is wrong",
            details={"password_required": True},
        ),
    )


async def open_share(
    *,
    token: str,
    password: str | None,
    visitor: Visitor,
    limiter: RateLimiter,
    download: bool,
) -> ShareTarget:
    """The link's file and version, if the link may be used now; every refusal is logged.
    A metadata view (`download=False`) is logged as `viewed` here; a download is logged when
    it is counted (`count_download`) or answered without content (`log_share_access`)."""
    link = await ShareLink.get_or_none(token_digest=digest(token)) if token else None
    if link is None:
        log.info("share.not_found", ip=visitor.ip, download=download)
        raise share_not_found()
    if link.revoked_at is not None:
        await _refuse(
            link, visitor, ShareOutcome.REVOKED, ShareGone("share_revoked", "This link was revoked")
        )
    if _is_expired(link, utcnow()):
        await _refuse(
            link, visitor, ShareOutcome.EXPIRED, ShareGone("share_expired", "This link has expired")
        )
    file = await File.get_or_none(id=link.file_id, deleted_at=None)  # type: ignore[attr-defined]
    if file is None:
        await _refuse(link, visitor, ShareOutcome.FILE_DELETED, share_not_found())
    await _check_password(link, password, visitor, limiter)
    reached = link.max_downloads is not None and link.download_count >= link.max_downloads
    if download and reached:
        await _refuse(
            link,
            visitor,
            ShareOutcome.LIMIT_REACHED,
            ShareGone("share_limit_reached", "This link's downloads are used up"),
        )
    try:
        version = await version_of(file, link.version)
    except NotFound:
        await _refuse(link, visitor, ShareOutcome.NOT_FOUND, share_not_found())
    if download:
        try:
            check_downloadable(version)
        except AppError as error:
            outcome = (
                ShareOutcome.NOT_SCANNED
                if error.code == "file_not_scanned"
                else ShareOutcome.QUARANTINED
            )
            await _refuse(link, visitor, outcome, error)
    else:
        await _log(link, visitor, ShareOutcome.VIEWED)
    return ShareTarget(link=link, file=file, version=version)


async def count_download(target: ShareTarget, visitor: Visitor) -> None:
    """Spend one download of the link, atomically; `share_limit_reached` (410) if another
    request took the last one first (or the link was revoked or expired meanwhile)."""
    now = utcnow()
    spent = await ShareLink.filter(
        Q(id=target.link.id),
        Q(revoked_at=None),
        Q(expires_at=None) | Q(expires_at__gt=now),
        Q(max_downloads=None) | Q(download_count__lt=F("max_downloads")),
    ).update(download_count=F("download_count") + 1)
    if not spent:
        await _refuse(
            target.link,
            visitor,
            ShareOutcome.LIMIT_REACHED,
            ShareGone("share_limit_reached", "This link's downloads are used up"),
        )
    await _log(target.link, visitor, ShareOutcome.OK)


async def log_share_access(target: ShareTarget, visitor: Visitor, outcome: ShareOutcome) -> None:
    await _log(target.link, visitor, outcome)
