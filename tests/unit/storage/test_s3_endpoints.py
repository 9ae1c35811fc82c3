"""The S3 store's botocore data loader keeps only the S3 endpoints, and resolves them as
botocore does with the whole file."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import pytest
from aiobotocore.session import get_session
from botocore.loaders import Loader

from storage.blobs.s3_endpoints import load_endpoints, use_endpoints_of

ENDPOINTS_JSON = Path(Loader.BUILTIN_DATA_PATH) / "endpoints.json"


def test_botocore_endpoints_keep_only_the_named_services_and_everything_else() -> None:
    text = ENDPOINTS_JSON.read_text(encoding="utf-8")
    expected = json.loads(text, object_pairs_hook=OrderedDict)
    for partition in expected["partitions"]:
        partition["services"] = OrderedDict(
            (name, entry) for name, entry in partition["services"].items() if name == "s3"
        )

    loaded = load_endpoints(text, ["s3"])

    assert loaded == expected
    assert [list(p["services"]) for p in loaded["partitions"]] == [["s3"]] * len(
        expected["partitions"]
    )


def test_members_outside_partition_services_are_kept_whole() -> None:
    text = """ {"version": 3, "partitions": [
        {"partition": "p", "regions": {"r": {}}, "services": {"a": {"x": [1]}, "s3": {"y": 2}}},
        {"services": {}} ], "extra": {"services": {"a": 1}}} """

    loaded = load_endpoints(text, ["s3"])

    assert loaded == {
        "version": 3,
        "partitions": [
            {"partition": "p", "regions": {"r": {}}, "services": {"s3": {"y": 2}}},
            {"services": {}},
        ],
        "extra": {"services": {"a": 1}},
    }
    assert isinstance(loaded["partitions"][0]["regions"], OrderedDict)  # as botocore reads


@pytest.mark.parametrize(
    "text", ['{"a": 1', '{"a": 1} x', '{"a" 1}', "", '{"partitions": [{"services": [1]}]}']
)
def test_malformed_json_is_refused(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        load_endpoints(text, ["s3"])


@pytest.mark.parametrize(
    ("region", "endpoint_url"),
    [
        ("us-east-1", None),
        ("eu-west-1", None),
        ("aws-global", None),
        ("cn-north-1", None),
        ("us-gov-west-1", None),
        ("xx-nowhere-1", None),
        ("eu-central-1", "http://127.0.0.1:9000"),
    ],
)
async def test_an_s3_client_resolves_as_with_the_whole_file(
    region: str, endpoint_url: str | None
) -> None:
    async def meta(*, subset: bool) -> tuple[object, ...]:
        session = get_session()
        if subset:
            use_endpoints_of(session, ["s3"])
        async with session.create_client(
            "s3",
            region_name=region,
            endpoint_url=endpoint_url,
            aws_access_key_id="id",
            aws_secret_access_key="secret",
        ) as client:
            url = await client.generate_presigned_url(
                "get_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=60
            )
            return (
                client.meta.endpoint_url,
                client.meta.region_name,
                client.meta.partition,
                url.split("?")[0],
                "X-Amz-Signature" in url,  # sigv4 presigning, not the legacy sigv2 default
            )

    assert await meta(subset=True) == await meta(subset=False)
