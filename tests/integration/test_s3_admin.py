"""storage.s3_admin against a real S3 server (moto_server on loopback): lifecycle tiering,
versioning and replication, read back from the bucket; each applied twice (idempotent)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from types_aiobotocore_s3.client import S3Client

from core.errors import ValidationFailed
from storage.blobs.s3 import S3BlobStore
from storage.s3_admin import (
    ArchiveClass,
    Change,
    LifecyclePolicy,
    StorageNotS3,
    apply_lifecycle,
    open_bucket,
    protect_bucket,
)
from tests.conftest import SettingsFactory
from tests.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoServer

ROLE = "arn:aws:iam::123456789012:role/ideinstein-replication"


async def new_bucket(s3: S3Client) -> str:
    name = f"blobs-{uuid.uuid4().hex[:12]}"
    await s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
async def bucket(s3: S3Client) -> str:
    return await new_bucket(s3)


@pytest.fixture
async def store(moto: MotoServer, bucket: str) -> AsyncIterator[S3BlobStore]:
    async with S3BlobStore(
        bucket,
        "blobs",
        endpoint_url=moto.endpoint_url,
        region_name=REGION,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
    ) as opened:
        yield opened


async def test_lifecycle_rules_are_applied_once(
    store: S3BlobStore, s3: S3Client, bucket: str
) -> None:
    policy = LifecyclePolicy(ia_days=45, archive_days=200, abort_multipart_days=3)

    first = await apply_lifecycle(store, policy)
    again = await apply_lifecycle(store, policy)

    assert [change.changed for change in first] == [True, True]
    assert [change.changed for change in again] == [False, False]
    assert first[0].line() == (
        f"tiering: applied: s3://{bucket}/blobs/: STANDARD_IA after 45 days, GLACIER after "
        "200 days, noncurrent versions deleted after 90 days"
    )
    assert again[1].line() == (
        f"multipart: already in place: s3://{bucket}/blobs/: incomplete multipart uploads "
        "aborted after 3 days"
    )
    rules = {
        rule["ID"]: rule
        for rule in (await s3.get_bucket_lifecycle_configuration(Bucket=bucket))["Rules"]
    }
    assert set(rules) == {"ideinstein-tiering", "ideinstein-abort-multipart"}
    tiering = rules["ideinstein-tiering"]
    assert tiering["Status"] == "Enabled"
    assert tiering["Filter"] == {"Prefix": "blobs/"}
    assert tiering["Transitions"] == [
        {"Days": 45, "StorageClass": "STANDARD_IA"},
        {"Days": 200, "StorageClass": "GLACIER"},
    ]
    assert tiering["NoncurrentVersionExpiration"] == {"NoncurrentDays": 90}
    multipart = rules["ideinstein-abort-multipart"]
    assert multipart["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 3}
    assert multipart["Filter"] == {"Prefix": "blobs/"}


async def test_changed_options_replace_our_rules_and_keep_others(
    store: S3BlobStore, s3: S3Client, bucket: str
) -> None:
    await s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "logs-expire",
                    "Filter": {"Prefix": "logs/"},
                    "Status": "Enabled",
                    "Expiration": {"Days": 10},
                }
            ]
        },
    )
    await apply_lifecycle(store, LifecyclePolicy())

    changes = await apply_lifecycle(
        store, LifecyclePolicy(archive_days=400, archive_class=ArchiveClass.DEEP_ARCHIVE)
    )

    assert changes[0].changed is True
    rules = {
        rule["ID"]: rule
        for rule in (await s3.get_bucket_lifecycle_configuration(Bucket=bucket))["Rules"]
    }
    assert set(rules) == {"logs-expire", "ideinstein-tiering", "ideinstein-abort-multipart"}
    assert rules["logs-expire"]["Expiration"] == {"Days": 10}
    assert rules["ideinstein-tiering"]["Transitions"] == [
        {"Days": 30, "StorageClass": "STANDARD_IA"},
        {"Days": 400, "StorageClass": "DEEP_ARCHIVE"},
    ]


@pytest.mark.parametrize(
    "policy",
    [
        LifecyclePolicy(ia_days=10),
        LifecyclePolicy(ia_days=30, archive_days=40),
        LifecyclePolicy(abort_multipart_days=0),
    ],
)
async def test_impossible_lifecycles_are_refused_before_anything_is_written(
    store: S3BlobStore, s3: S3Client, bucket: str, policy: LifecyclePolicy
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await apply_lifecycle(store, policy)

    assert caught.value.code == "invalid_lifecycle"
    with pytest.raises(s3.exceptions.ClientError, match="NoSuchLifecycleConfiguration"):
        await s3.get_bucket_lifecycle_configuration(Bucket=bucket)


async def test_protect_turns_versioning_on_once(
    store: S3BlobStore, s3: S3Client, bucket: str
) -> None:
    first = await protect_bucket(store)
    again = await protect_bucket(store)

    assert first == [Change(what="versioning", changed=True, detail=f"s3://{bucket}")]
    assert again == [Change(what="versioning", changed=False, detail=f"s3://{bucket}")]
    assert (await s3.get_bucket_versioning(Bucket=bucket))["Status"] == "Enabled"


async def test_protect_with_a_replica_sets_up_replication_once(
    moto: MotoServer, s3: S3Client, bucket: str
) -> None:
    # The whole bucket, as in production (STORAGE_URL=s3://BUCKET): moto answers every
    # replication rule with an empty prefix filter, so a prefixed store cannot be read back.
    replica = await new_bucket(s3)

    async with S3BlobStore(
        bucket,
        endpoint_url=moto.endpoint_url,
        region_name=REGION,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
    ) as store:
        first = await protect_bucket(store, replica_bucket=replica, replication_role=ROLE)
        again = await protect_bucket(store, replica_bucket=replica, replication_role=ROLE)

    assert [(c.what, c.changed) for c in first] == [
        ("versioning", True),
        ("versioning", True),
        ("replication", True),
    ]
    assert [c.changed for c in again] == [False, False, False]
    assert first[2].detail == f"s3://{bucket}/ -> s3://{replica} (STANDARD_IA)"
    assert (await s3.get_bucket_versioning(Bucket=replica))["Status"] == "Enabled"
    configuration = (await s3.get_bucket_replication(Bucket=bucket))["ReplicationConfiguration"]
    assert configuration["Role"] == ROLE
    [rule] = configuration["Rules"]
    assert rule["ID"] == "ideinstein-backup"
    assert rule["Status"] == "Enabled"
    assert rule["Filter"] == {"Prefix": ""}
    assert rule["DeleteMarkerReplication"] == {"Status": "Disabled"}
    assert rule["Destination"] == {
        "Bucket": f"arn:aws:s3:::{replica}",
        "StorageClass": "STANDARD_IA",
    }


async def test_replication_needs_both_bucket_and_role(
    store: S3BlobStore, s3: S3Client, bucket: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await protect_bucket(store, replica_bucket="elsewhere")

    assert caught.value.code == "invalid_replication"
    assert "Status" not in await s3.get_bucket_versioning(Bucket=bucket)


async def test_a_local_store_is_refused(make_settings: SettingsFactory) -> None:
    with pytest.raises(StorageNotS3) as caught:
        async with open_bucket(make_settings()):
            pass

    assert caught.value.code == "storage_not_s3"
