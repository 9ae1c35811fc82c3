"""The compose file describes the production topology and feeds every setting the code reads."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

from api.cli import build_parser
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker" / "compose.yaml"
APP_SERVICES = ("migrate", "hub-1", "hub-2", "worker")
# Read by libraries rather than by Settings: the S3 client's endpoint and credentials.
LIBRARY_SETTINGS = {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
# Defaults that are right in production too, so compose need not repeat them.
DEFAULTS_KEPT = {"HOST", "PORT", "DATA_DIR", "UVLOOP", "SHUTDOWN_TIMEOUT", "MAX_REQUEST_BYTES"}


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def test_every_part_of_the_topology_is_there() -> None:
    services = _compose()["services"]
    assert set(services) >= {
        "postgres",
        "redis",
        "clamd",
        "s3",
        "migrate",
        "hub-1",
        "hub-2",
        "worker",
        "lb",
    }


def test_app_services_get_every_setting_and_only_real_ones() -> None:
    known = {name.upper() for name in Settings.model_fields}
    for name in APP_SERVICES:
        env = set(_compose()["services"][name]["environment"])
        assert env - known - LIBRARY_SETTINGS == set(), f"{name}: unknown settings"
        assert known - env - DEFAULTS_KEPT == set(), f"{name}: settings left out"


def test_app_commands_exist_in_the_command_line() -> None:
    parser = build_parser()
    for name in APP_SERVICES:
        command = _compose()["services"][name]["command"]
        assert command[0] == "ideinstein"
        args = parser.parse_args(command[1:])
        assert callable(args.func), shlex.join(command)


def test_hubs_wait_for_migrations_and_the_lb_knows_both() -> None:
    services = _compose()["services"]
    for hub in ("hub-1", "hub-2"):
        assert services[hub]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    nginx = (ROOT / "docker" / "nginx.conf").read_text(encoding="utf-8")
    assert "server hub-1:8080;" in nginx
    assert "server hub-2:8080;" in nginx
    assert "ip_hash;" in nginx


def test_no_secret_is_written_in_the_file() -> None:
    env = _compose()["services"]["hub-1"]["environment"]
    secrets = ("SECRET_KEY", "AWS_SECRET_ACCESS_KEY")
    oauth = tuple(f"OAUTH_{p}_CLIENT_SECRET" for p in ("GOOGLE", "MICROSOFT", "LINKEDIN"))
    for name in secrets + oauth:
        assert env[name].startswith("${"), name
    assert "${POSTGRES_PASSWORD" in env["DATABASE_URL"]


def test_dockerfile_copies_every_package() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text(encoding="utf-8")
    for package in ("core", "db", "storage", "render_farm", "hub", "api"):
        assert f"COPY {package} ./{package}" in dockerfile


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [n.upper() for n in Settings.model_fields if f"| `{n.upper()}` |" not in readme]
    assert missing == []
