"""A real S3 server for tests: moto's `moto_server` (from the `moto[server]` dev extra) on a free
loopback port, started per test session and stopped after it.

Under `CI=true` a missing `moto_server` fails the test; elsewhere the test is skipped.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"  # moto accepts any credentials
REGION = "us-east-1"


def require_moto_server() -> str:
    beside_python = Path(sys.executable).with_name("moto_server")  # the venv's, first
    found = str(beside_python) if beside_python.is_file() else shutil.which("moto_server")
    if found:
        return found
    message = "moto_server is not installed (pip install -e '.[dev]' brings moto[server])"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: a missing service is a failure)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class MotoServer:
    endpoint_url: str
    process: subprocess.Popen[bytes]
    log: Path


@contextmanager
def run_moto_server(log: Path, timeout: float = 30.0) -> Iterator[MotoServer]:
    binary = require_moto_server()
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 (our own binary, fixed arguments)
            [binary, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                pytest.fail(f"moto_server exited with {process.returncode}: {log.read_text()}")
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):  # noqa: S310
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not answer within {timeout} s: {log.read_text()}")
                time.sleep(0.1)
        yield MotoServer(endpoint_url=endpoint, process=process, log=log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def client_options(moto: MotoServer) -> dict[str, str]:
    """Keyword arguments of an S3 client (aiobotocore or boto3) on the moto server."""
    return {
        "endpoint_url": moto.endpoint_url,
        "region_name": REGION,
        "aws_access_key_id": ACCESS_KEY_ID,
        "aws_secret_access_key": SECRET_ACCESS_KEY,
    }


def aws_environment(moto: MotoServer) -> dict[str, str]:
    """The environment that points an app's S3 client at the moto server."""
    return {
        "AWS_ENDPOINT_URL": moto.endpoint_url,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": REGION,
    }
