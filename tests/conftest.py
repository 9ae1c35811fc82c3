"""Shared fixtures: settings, databases (SQLite and the real PostgreSQL), Redis, the app."""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from aiobotocore.session import get_session
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from types_aiobotocore_s3.client import S3Client

from api.app import create_app
from core.logs import configure_logging
from core.settings import Settings
from db.migrate import apply_migrations
from tests.s3 import MotoServer, aws_environment, client_options, run_moto_server
from tests.services import require_postgres, require_redis

SettingsFactory = Callable[..., Settings]
T = TypeVar("T")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--databases",
        default="sqlite,postgres",
        help="comma-separated databases the database-backed tests run on",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_kind" in metafunc.fixturenames:
        kinds = metafunc.config.getoption("--databases").split(",")
        marker = metafunc.definition.get_closest_marker("databases")
        if marker is not None:  # e.g. several hub nodes: PostgreSQL only, by design
            kinds = [kind for kind in kinds if kind in marker.args]
        metafunc.parametrize("database_kind", kinds)


@pytest.fixture
def var_dir(tmp_path: Path) -> Path:
    path = tmp_path / "var"
    path.mkdir()
    return path


@pytest.fixture
async def database_url(database_kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database: a SQLite file, or a fresh schema in the real PostgreSQL."""
    if database_kind == "sqlite":
        yield f"sqlite://{tmp_path}/test.db"
        return
    base = require_postgres()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        yield f"{base}?schema={schema}"
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


def _run_aside(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a loop of its own, in a thread: session fixtures are
    first asked for from inside a test's running loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, made once; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    _run_aside(lambda: apply_migrations(f"sqlite://{path}"))
    return path


@dataclass(frozen=True)
class PostgresTemplate:
    url: str
    tables: tuple[str, ...]


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[PostgresTemplate]:
    """One migrated schema per test worker; each test starts from it emptied (TRUNCATE is
    ~100 times faster than migrating a fresh schema)."""
    base = require_postgres()
    schema = f"w_{uuid.uuid4().hex[:16]}"
    url = f"{base}?schema={schema}"

    async def create() -> tuple[str, ...]:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        finally:
            await conn.close()
        await apply_migrations(url)
        conn = await asyncpg.connect(base)
        try:
            rows = await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
                schema,
            )
        finally:
            await conn.close()
        return tuple(r["table_name"] for r in rows if r["table_name"] != "tortoise_migrations")

    async def drop() -> None:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    tables = _run_aside(create)
    yield PostgresTemplate(url=url, tables=tables)
    _run_aside(drop)


@pytest.fixture
async def migrated_database_url(
    database_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> str:
    """A database at the newest migration with no rows in it."""
    if database_kind == "sqlite":
        target = tmp_path / "test.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), target)
        return f"sqlite://{target}"
    template: PostgresTemplate = request.getfixturevalue("postgres_template")
    schema = template.url.rpartition("schema=")[2]
    conn = await asyncpg.connect(require_postgres())
    try:
        names = ", ".join(f'"{schema}"."{table}"' for table in template.tables)
        await conn.execute(f"TRUNCATE {names} CASCADE")
    finally:
        await conn.close()
    return template.url


@pytest.fixture
def redis_url() -> str:
    return require_redis()


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key and channel prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def make_settings(var_dir: Path) -> SettingsFactory:
    """Settings as in embedded mode, isolated in this test's folder, plus overrides."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "environment": "test",
            "data_dir": var_dir,
            "database_url": f"sqlite://{var_dir}/ideinstein.db",
            "storage_url": f"file://{var_dir}/blobs",
            "vies_api_base": "",  # format checks only; tests of VIES point it at a fake
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return build


@pytest.fixture
def settings(make_settings: SettingsFactory, migrated_database_url: str) -> Settings:
    # Loopback is a trusted proxy, so a test can speak for many clients with X-Forwarded-For.
    return make_settings(database_url=migrated_database_url, trusted_proxies="127.0.0.1,::1")


def from_address(n: int) -> dict[str, str]:
    """Headers that make a request come from client address 192.0.2.n (TEST-NET-1)."""
    return {"X-Forwarded-For": f"192.0.2.{n}"}


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
    return client


@pytest.fixture(autouse=True, scope="session")
def _logging() -> None:
    """Log as the service does, so tests can read records through caplog."""
    configure_logging(level="INFO", json=True)


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """The CLI's main() configures logging onto the stream it sees (pytest's capture, which
    closes); put the session's handlers back so threads that log later find an open stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(autouse=True)
def _no_environment_leaks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build their settings explicitly; a developer's shell must not change them."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


# S3: one moto server per test process, a client on it, a fresh bucket per test, and the
# environment that points the app's aiobotocore at it.


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with run_moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


@pytest.fixture
async def s3(moto: MotoServer) -> AsyncIterator[S3Client]:
    async with get_session().create_client("s3", **client_options(moto)) as client:
        yield client


@pytest.fixture
async def bucket(s3: S3Client) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    await s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def aws_env(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """The app's S3 client (STORAGE_URL=s3://...) talks to the moto server."""
    for name, value in aws_environment(moto).items():
        monkeypatch.setenv(name, value)
    return moto
