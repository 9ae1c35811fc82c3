"""Reading VIES's answers: only `isValid: true` is valid, only INVALID is a definite no;
everything else (member state away, rate limits, an unreachable or garbled service) is
`unavailable`, which never makes an order reverse-charged."""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
import pytest

from api.commerce.vies import VatIdStatus, ViesClient, _read_answer


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        (
            {"isValid": True, "userError": "VALID", "name": "ACME", "requestIdentifier": "W1"},
            200,
            VatIdStatus.VALID,
        ),
        ({"isValid": False, "userError": "INVALID"}, 200, VatIdStatus.INVALID),
        (
            {"actionSucceed": False, "errorWrappers": [{"error": "INVALID_INPUT"}]},
            400,
            VatIdStatus.INVALID,
        ),
        ({"isValid": False, "userError": "MS_UNAVAILABLE"}, 200, VatIdStatus.UNAVAILABLE),
        ({"isValid": False, "userError": "MS_MAX_CONCURRENT_REQ"}, 200, VatIdStatus.UNAVAILABLE),
        (
            {"actionSucceed": False, "errorWrappers": [{"error": "SERVICE_UNAVAILABLE"}]},
            500,
            VatIdStatus.UNAVAILABLE,
        ),
        ({"unexpected": 1}, 200, VatIdStatus.UNAVAILABLE),
    ],
)
def test_answers(body: dict[str, Any], status: int, expected: VatIdStatus) -> None:
    assert _read_answer(body, status).status is expected


def test_withheld_fields_are_empty() -> None:
    answer = _read_answer({"isValid": True, "name": "---", "requestIdentifier": "WAPI1"}, 200)
    assert (answer.name, answer.request_id) == ("", "WAPI1")


async def test_an_unreachable_service_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: the connection is refused
        async with aiohttp.ClientSession() as session:
            client = ViesClient(api_base=f"http://127.0.0.1:{port}", session=session)
            assert (await client.check("FR40303265045")).status is VatIdStatus.UNAVAILABLE
