"""The `ideinstein` command line, on SQLite and PostgreSQL, and `serve` as a real process."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from api.cli import main
from core.passwords import verify_password
from db.connection import open_database
from db.models.identity import Role, User

MIGRATIONS = Path(__file__).resolve().parents[2] / "db" / "migrations"


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> str:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    return database_url


def test_config_prints_effective_settings_with_secrets_hidden(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECRET_KEY", "super-secret-signing-key-super-secret")
    monkeypatch.setenv("REDIS_URL", "redis://:redispass@cache:6379/0")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "super-secret-signing-key-super-secret" not in out
    assert "redispass" not in out
    assert re.search(r"^REDIS_URL +redis://:\*{10}@cache:6379/0$", out, re.MULTILINE)
    assert main(["config", "--json"]) == 0
    values = json.loads(capsys.readouterr().out)
    assert values["database_url"] == "sqlite://var/ideinstein.db"
    assert values["secret_key"] == "**********"


def test_bad_setting_stops_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STORAGE_URL", "gopher://files")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("ideinstein: configuration error: STORAGE_URL: unknown backend 'gopher'")


def test_worker_without_redis_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["worker"]) == 2
    assert "REDIS_URL: the Celery worker needs Redis" in capsys.readouterr().err


def test_migrate_apply_list_and_downgrade(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    names = sorted(p.stem for p in MIGRATIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out == f"applied: {', '.join(names)}\n"
    assert main(["migrate"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["migrate", "--list"]) == 0
    assert capsys.readouterr().out == "".join(f"[x] {n}\n" for n in names)
    assert main(["migrate", "--downgrade", "1"]) == 0
    assert capsys.readouterr().out == f"rolled back: {names[-1]}\n"
    assert main(["migrate", "--list"]) == 0
    listed = "".join(f"[x] {n}\n" for n in names[:-1]) + f"[ ] {names[-1]}\n"
    assert capsys.readouterr().out == listed
    assert main(["migrate", "--downgrade", "0"]) == 2


async def _user(database_url: str, email: str) -> User | None:
    async with open_database(database_url):
        return await User.get_or_none(email=email)


def test_createsuperuser(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate"]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long enough passphrase\n"))
    assert main(["createsuperuser", "--email", "Boss@Example.COM", "--password-stdin"]) == 0
    assert "created super_admin boss@example.com" in capsys.readouterr().out

    user = asyncio.run(_user(cli_env, "boss@example.com"))
    assert user is not None
    assert user.role is Role.SUPER_ADMIN
    assert user.email_verified_at is not None
    assert user.password_hash is not None
    assert verify_password(user.password_hash, "a long enough passphrase")

    monkeypatch.setenv("IDEINSTEIN_SUPERUSER_PASSWORD", "another long passphrase")
    assert main(["createsuperuser", "--email", "boss@example.com"]) == 1
    assert "email_taken" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("email", "password", "code"),
    [
        ("not-an-address", "a long enough passphrase", "invalid_email"),
        ("ok@example.com", "short", "weak_password"),
    ],
)
def test_createsuperuser_refuses_bad_input_and_writes_nothing(
    cli_env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    email: str,
    password: str,
    code: str,
) -> None:
    assert main(["migrate"]) == 0
    monkeypatch.setenv("IDEINSTEIN_SUPERUSER_PASSWORD", password)
    assert main(["createsuperuser", "--email", email]) == 1
    assert code in capsys.readouterr().err

    async def count() -> int:
        async with open_database(cli_env):
            return await User.all().count()

    assert asyncio.run(count()) == 0


def test_makemigrations_finds_no_changes(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["makemigrations"]) == 0
    assert capsys.readouterr().out == "no changes\n"


async def test_serve_answers_healthz_and_stops_cleanly_on_sigterm(
    tmp_path: Path, unused_tcp_port: int
) -> None:
    """`ideinstein serve` from nothing: embedded mode migrates, serves, and stops on SIGTERM."""
    env = {**os.environ, "PORT": str(unused_tcp_port), "LOG_FORMAT": "json"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api.cli",
        "serve",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    started = time.monotonic()
    url = f"http://127.0.0.1:{unused_tcp_port}"
    try:
        async with aiohttp.ClientSession() as session:
            body = await asyncio.wait_for(_wait_healthy(session, url), 60)
            assert body == {"status": "ok"}
            ready = await session.get(f"{url}/readyz")
            assert ready.status == 200
        assert time.monotonic() - started < 60
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 0, stderr.decode()
    assert (tmp_path / "var" / "ideinstein.db").exists()
    events = [json.loads(line)["event"] for line in stderr.decode().splitlines()]
    assert "serve.migrated" in events
    assert "serve.starting" in events
    assert "http.request" in events


async def _wait_healthy(session: aiohttp.ClientSession, url: str) -> object:
    while True:
        try:
            async with session.get(f"{url}/healthz") as response:
                return await response.json()
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.1)  # the process is still starting: nothing to wait on but time
