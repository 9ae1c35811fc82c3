"""Operations on the blob bucket itself (the `ideinstein storage ...` commands): storage tiers
by age, and protection for backups (versioning, replication).

Both are idempotent: the bucket's current configuration is read first; our rules (known by
their IDs, `ideinstein-*`) are put in place, rules of others are kept, and nothing is written
when everything is already as asked. The S3 client is the blob store's own (`S3BlobStore`,
built from STORAGE_URL and the standard AWS settings), so the commands reach the same bucket,
endpoint and credentials as the service.

Note on archive classes: objects in GLACIER or DEEP_ARCHIVE must be restored before they can
be read (downloads and presigned URLs fail until then); GLACIER_IR keeps millisecond reads.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from core.errors import AppError, ValidationFailed
from core.settings import Settings
from storage.blobs import create_blob_store
from storage.blobs.s3 import S3BlobStore

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import (
        BucketLifecycleConfigurationTypeDef,
        LifecycleRuleOutputTypeDef,
        LifecycleRuleTypeDef,
        ReplicationConfigurationTypeDef,
    )

TIERING_RULE = "ideinstein-tiering"
MULTIPART_RULE = "ideinstein-abort-multipart"
REPLICATION_RULE = "ideinstein-backup"
MIN_IA_DAYS = 30  # S3 refuses STANDARD_IA transitions before 30 days
MIN_DAYS_IN_IA = 30  # and an archive transition less than 30 days after STANDARD_IA


class ArchiveClass(StrEnum):
    GLACIER_IR = "GLACIER_IR"
    GLACIER = "GLACIER"
    DEEP_ARCHIVE = "DEEP_ARCHIVE"


class StorageNotS3(AppError):
    status = 400
    default_code = "storage_not_s3"
    default_message = "STORAGE_URL is not an S3 bucket"


@dataclass(frozen=True)
class LifecyclePolicy:
    ia_days: int = 30
    archive_days: int = 365
    archive_class: ArchiveClass = ArchiveClass.GLACIER
    abort_multipart_days: int = 7
    noncurrent_days: int = 90  # old versions (kept once versioning is on) are deleted after

    def check(self) -> None:
        problems = []
        if self.ia_days < MIN_IA_DAYS:
            problems.append(f"STANDARD_IA needs at least {MIN_IA_DAYS} days")
        if self.archive_days < self.ia_days + MIN_DAYS_IN_IA:
            problems.append(
                f"{self.archive_class} must come at least {MIN_DAYS_IN_IA} days after STANDARD_IA"
            )
        if self.abort_multipart_days < 1 or self.noncurrent_days < 1:
            problems.append("day counts must be at least 1")
        if problems:
            raise ValidationFailed("invalid_lifecycle", "; ".join(problems))


@dataclass(frozen=True)
class Change:
    """What a command did to one setting: `changed` False when it was already so."""

    what: str
    changed: bool
    detail: str

    def line(self) -> str:
        state = "applied" if self.changed else "already in place"
        return f"{self.what}: {state}: {self.detail}"


@contextlib.asynccontextmanager
async def open_bucket(settings: Settings) -> AsyncIterator[S3BlobStore]:
    """The blob store of STORAGE_URL, opened; `StorageNotS3` for a local store."""
    if not settings.storage_url.startswith("s3://"):
        raise StorageNotS3(
            message=f"STORAGE_URL is {settings.storage_url}: lifecycle and protection apply to "
            "an S3 bucket (s3://BUCKET)"
        )
    store = create_blob_store(settings)
    assert isinstance(store, S3BlobStore)
    async with store:
        yield store


def _lifecycle_rules(policy: LifecyclePolicy, prefix: str) -> list[LifecycleRuleTypeDef]:
    return [
        {
            "ID": TIERING_RULE,
            "Filter": {"Prefix": prefix},
            "Status": "Enabled",
            "Transitions": [
                {"Days": policy.ia_days, "StorageClass": "STANDARD_IA"},
                {"Days": policy.archive_days, "StorageClass": policy.archive_class.value},
            ],
            "NoncurrentVersionExpiration": {"NoncurrentDays": policy.noncurrent_days},
        },
        {
            "ID": MULTIPART_RULE,
            "Filter": {"Prefix": prefix},
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": policy.abort_multipart_days},
        },
    ]


def _comparable(rule: Any) -> dict[str, Any]:
    """A rule as S3 gives it back, without what servers add on their own."""
    kept = {
        key: rule[key]
        for key in (
            "ID",
            "Filter",
            "Status",
            "Transitions",
            "NoncurrentVersionExpiration",
            "AbortIncompleteMultipartUpload",
            "Expiration",
        )
        if key in rule
    }
    if "Filter" in kept and not kept["Filter"].get("Prefix"):
        kept["Filter"] = {"Prefix": ""}
    return kept


async def apply_lifecycle(store: S3BlobStore, policy: LifecyclePolicy) -> list[Change]:
    policy.check()
    client = store.client
    current = await _current_lifecycle(client, store.bucket)
    ours = _lifecycle_rules(policy, store.prefix)
    theirs = [rule for rule in current if rule.get("ID") not in (TIERING_RULE, MULTIPART_RULE)]
    existing = {rule.get("ID"): _comparable(rule) for rule in current}
    changed = any(existing.get(rule["ID"]) != _comparable(rule) for rule in ours)
    if changed:
        configuration: BucketLifecycleConfigurationTypeDef = {
            "Rules": [*cast("list[LifecycleRuleTypeDef]", theirs), *ours]
        }
        await client.put_bucket_lifecycle_configuration(
            Bucket=store.bucket, LifecycleConfiguration=configuration
        )
    where = f"s3://{store.bucket}/{store.prefix}"
    return [
        Change(
            what="tiering",
            changed=changed,
            detail=f"{where}: STANDARD_IA after {policy.ia_days} days, "
            f"{policy.archive_class.value} after {policy.archive_days} days, noncurrent "
            f"versions deleted after {policy.noncurrent_days} days",
        ),
        Change(
            what="multipart",
            changed=changed,
            detail=f"{where}: incomplete multipart uploads aborted after "
            f"{policy.abort_multipart_days} days",
        ),
    ]


async def _current_lifecycle(client: S3Client, bucket: str) -> list[LifecycleRuleOutputTypeDef]:
    try:
        response = await client.get_bucket_lifecycle_configuration(Bucket=bucket)
    except ClientError as exc:
        if _code(exc) == "NoSuchLifecycleConfiguration":
            return []
        raise
    return list(response.get("Rules", []))


async def protect_bucket(
    store: S3BlobStore,
    *,
    replica_bucket: str | None = None,
    replication_role: str | None = None,
    replica_storage_class: str = "STANDARD_IA",
) -> list[Change]:
    """Versioning on (deleted or overwritten blobs stay recoverable); with a replica bucket
    and an IAM role, replication of every new object to it (a copy in another region or
    account). Replication needs versioning on both buckets: the replica's is switched on too
    when this account may."""
    if (replica_bucket is None) != (replication_role is None):
        raise ValidationFailed(
            "invalid_replication", "Replication needs both a replica bucket and a role ARN"
        )
    changes = [await _enable_versioning(store.client, store.bucket)]
    if replica_bucket is None or replication_role is None:
        return changes
    changes.append(await _enable_versioning(store.client, replica_bucket))
    changes.append(
        await _replicate(
            store,
            replica_bucket=replica_bucket,
            role=replication_role,
            storage_class=replica_storage_class,
        )
    )
    return changes


async def _enable_versioning(client: S3Client, bucket: str) -> Change:
    current = await client.get_bucket_versioning(Bucket=bucket)
    if current.get("Status") == "Enabled":
        return Change(what="versioning", changed=False, detail=f"s3://{bucket}")
    await client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return Change(what="versioning", changed=True, detail=f"s3://{bucket}")


def replication_configuration(
    *, prefix: str, replica_bucket: str, role: str, storage_class: str
) -> ReplicationConfigurationTypeDef:
    return {
        "Role": role,
        "Rules": [
            {
                "ID": REPLICATION_RULE,
                "Priority": 1,
                "Status": "Enabled",
                "Filter": {"Prefix": prefix},
                "DeleteMarkerReplication": {"Status": "Disabled"},  # a deletion is not copied
                "Destination": {
                    "Bucket": f"arn:aws:s3:::{replica_bucket}",
                    "StorageClass": storage_class,  # type: ignore[typeddict-item]
                },
            }
        ],
    }


async def _replicate(
    store: S3BlobStore, *, replica_bucket: str, role: str, storage_class: str
) -> Change:
    client = store.client
    wanted = replication_configuration(
        prefix=store.prefix, replica_bucket=replica_bucket, role=role, storage_class=storage_class
    )
    detail = f"s3://{store.bucket}/{store.prefix} -> s3://{replica_bucket} ({storage_class})"
    try:
        current = (await client.get_bucket_replication(Bucket=store.bucket)).get(
            "ReplicationConfiguration"
        )
    except ClientError as exc:
        if _code(exc) != "ReplicationConfigurationNotFoundError":
            raise
        current = None
    if current is not None and _same_replication(current, wanted):
        return Change(what="replication", changed=False, detail=detail)
    await client.put_bucket_replication(Bucket=store.bucket, ReplicationConfiguration=wanted)
    return Change(what="replication", changed=True, detail=detail)


def _same_replication(current: Any, wanted: ReplicationConfigurationTypeDef) -> bool:
    if current.get("Role") != wanted["Role"]:
        return False
    rules = {rule.get("ID"): rule for rule in current.get("Rules", [])}
    want = wanted["Rules"][0]
    have = rules.get(REPLICATION_RULE)
    if have is None:
        return False
    keys = ("Priority", "Status", "Destination", "DeleteMarkerReplication")
    filter_have = have.get("Filter", {}).get("Prefix", "")
    return filter_have == want["Filter"].get("Prefix", "") and all(
        have.get(key) == want.get(key) for key in keys
    )


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
