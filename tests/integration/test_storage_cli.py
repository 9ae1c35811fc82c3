"""`ideinstein storage lifecycle|protect` against a real S3 server (moto_server on loopback),
configured as in production: STORAGE_URL and the standard AWS variables."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from api.cli import main
from tests.s3 import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    MotoServer,
    aws_environment,
)

ROLE = "arn:aws:iam::123456789012:role/backup"


@pytest.fixture
def s3(moto: MotoServer) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=moto.endpoint_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"cli-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, moto: MotoServer, bucket: str) -> str:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STORAGE_URL", f"s3://{bucket}")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    for name, value in aws_environment(moto).items():
        monkeypatch.setenv(name, value)
    return bucket


def test_lifecycle_applies_the_rules_then_finds_them_in_place(
    s3_env: str, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = s3_env
    args = ["storage", "lifecycle", "--ia-days", "60", "--archive-days", "180"]
    args += ["--archive-class", "DEEP_ARCHIVE", "--abort-multipart-days", "2"]

    assert main(args) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"tiering: applied: s3://{bucket}/: STANDARD_IA after 60 days, DEEP_ARCHIVE after 180 "
        "days, noncurrent versions deleted after 90 days",
        f"multipart: applied: s3://{bucket}/: incomplete multipart uploads aborted after 2 days",
    ]
    assert main(args) == 0
    assert [line.split(":")[1] for line in capsys.readouterr().out.splitlines()] == [
        " already in place",
        " already in place",
    ]
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert rules["ideinstein-tiering"]["Transitions"] == [
        {"Days": 60, "StorageClass": "STANDARD_IA"},
        {"Days": 180, "StorageClass": "DEEP_ARCHIVE"},
    ]
    assert rules["ideinstein-abort-multipart"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 2
    }


def test_lifecycle_refuses_impossible_days_before_connecting(
    s3_env: str, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["storage", "lifecycle", "--ia-days", "5"]) == 1

    err = capsys.readouterr().err
    assert err == "ideinstein: invalid_lifecycle: STANDARD_IA needs at least 30 days\n"
    with pytest.raises(s3.exceptions.ClientError):
        s3.get_bucket_lifecycle_configuration(Bucket=s3_env)


def test_protect_turns_on_versioning_and_replication(
    s3_env: str, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = s3_env
    replica = f"replica-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=replica)
    args = ["storage", "protect", "--replica-bucket", replica, "--replication-role", ROLE]

    assert main(args) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"versioning: applied: s3://{bucket}",
        f"versioning: applied: s3://{replica}",
        f"replication: applied: s3://{bucket}/ -> s3://{replica} (STANDARD_IA)",
    ]
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"versioning: already in place: s3://{bucket}",
        f"versioning: already in place: s3://{replica}",
        f"replication: already in place: s3://{bucket}/ -> s3://{replica} (STANDARD_IA)",
    ]
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    configuration = s3.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]
    assert configuration["Role"] == ROLE
    assert configuration["Rules"][0]["Destination"]["Bucket"] == f"arn:aws:s3:::{replica}"


def test_protect_without_a_replica_only_versions(
    s3_env: str, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["storage", "protect"]) == 0

    assert capsys.readouterr().out == f"versioning: applied: s3://{s3_env}\n"
    with pytest.raises(s3.exceptions.ClientError, match="ReplicationConfigurationNotFound"):
        s3.get_bucket_replication(Bucket=s3_env)


@pytest.mark.parametrize("command", ["lifecycle", "protect"])
def test_a_local_store_is_refused_clearly(
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STORAGE_URL", f"file://{tmp_path}/blobs")

    assert main(["storage", command]) == 1

    assert capsys.readouterr().err == (
        f"ideinstein: storage_not_s3: STORAGE_URL is file://{tmp_path}/blobs: lifecycle and "
        "protection apply to an S3 bucket (s3://BUCKET)\n"
    )
