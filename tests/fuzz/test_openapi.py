"""Fuzzing the REST API from its own OpenAPI document (schemathesis): every operation of
/api/v1/openapi.json gets generated requests, authenticated as an admin, against a real
`ideinstein serve` on SQLite. No response may be a 5xx, and every response must match the
schema the operation documents.

FUZZ_EXAMPLES (default 8) sets the examples per operation; `make test` keeps it small.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis

# schemathesis imports its OpenAPI modules on first use, which here is inside the worker thread
# that runs fuzz_all; compiling (pytest's assertion rewriting) in that thread has failed with
# CPython 3.11's "AST constructor recursion depth mismatch". Import them here, on the main thread.
import schemathesis.specs.openapi.schemas
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from core.permissions import Role
from core.tokens import KeyRing, signing_key
from tests.identity import sign_in
from tests.processes import ServeProcess, start_serve

pytestmark = [pytest.mark.databases("sqlite"), pytest.mark.timeout(180)]

SECRET = "fuzz-secret-fuzz-secret-fuzz-secret-fuzz-1"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
# Operations that would end the fuzzer's own session (what follows would only see 401s).
SKIPPED = {("POST", "/api/v1/auth/logout")}
# Known bugs, reported and left to their owners: the failure is printed, the test passes.
KNOWN: dict[tuple[str, str], str] = {}
# A dependency this test hub does not configure (Stripe, PayPal): a deliberate 503 with a code.
NOT_CONFIGURED = {"payments_unavailable", "webhooks_unavailable"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def hub(migrated_database_url: str, tmp_path: Path) -> AsyncIterator[ServeProcess]:
    env = {
        "DATABASE_URL": migrated_database_url,
        "SECRET_KEY": SECRET,
        "DATA_DIR": str(tmp_path / "var"),
    }
    served = await start_serve(port=_free_port(), env=env, workdir=tmp_path, name="hub")
    yield served
    await served.stop()


def _code(response: Any) -> str | None:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


def fuzz_all(base_url: str, token: str) -> tuple[int, list[str]]:
    """Run every operation's examples (blocking: requests); (operations run, failures)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/api/v1/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err raises: our own schema
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        ran += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            response = case.call(base_url=base_url, headers=headers, timeout=30)
            if response.status_code == 503 and _code(response) in NOT_CONFIGURED:
                return
            case.validate_response(
                response, checks=[not_a_server_error, response_schema_conformance]
            )

        key = (operation.method.upper(), operation.path)
        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect them all
            if key in KNOWN:
                print(f"known failure of {key}: {KNOWN[key]}")
                continue
            failures.append(f"{key[0]} {key[1]}: {exc}"[:3000])
    return ran, failures


async def test_no_operation_answers_5xx_or_off_schema(
    hub: ServeProcess, migrated_database_url: str
) -> None:
    admin = await sign_in(
        migrated_database_url, KeyRing(current=signing_key(SECRET)), role=Role.ADMIN
    )
    ran, failures = await asyncio.to_thread(fuzz_all, hub.url, admin.token)
    assert ran > 90
    assert failures == [], "\n\n".join(failures)
