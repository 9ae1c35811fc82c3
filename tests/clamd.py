"""A real clamd for tests: Debian's `clamd` in the foreground, on loopback, with a signature
database of its own (never the system's, never freshclam) and limits chosen by the test.

Under `CI=true` a missing clamd binary fails the test; elsewhere the test is skipped.
"""

from __future__ import annotations

import hashlib
import os
import selectors
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

CLAMD = os.environ.get("TEST_CLAMD_BINARY", "/usr/sbin/clamd")
# The EICAR test file (https://www.eicar.org): harmless, and every scanner reports it.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
# clamd appends ".UNOFFICIAL" to names from unsigned databases such as these.
HASH_SIGNATURE = "Eicar-Test-Signature"  # .hdb: the stream is exactly EICAR
BODY_SIGNATURE = "Eicar-Test-Signature-Body"  # .ndb: EICAR anywhere in the stream
READY_LINE = b"Listening daemon"
# Above the largest upload (UPLOAD_MAX_BYTES, 500 MiB by default), as in docker/clamd.conf:
# a file the service accepts is never too long for clamd.
DEFAULT_STREAM_MAX_LENGTH = 1024 * 1024 * 1024


def require_clamd() -> str:
    found = shutil.which(CLAMD)
    if found:
        return found
    message = f"clamd is not installed ({CLAMD}; Debian package clamav-daemon)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: a missing service is a failure)")
    pytest.skip(message)


def write_signatures(directory: Path, *, body_signature: bool = True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.md5(EICAR, usedforsecurity=False).hexdigest()
    (directory / "test.hdb").write_text(f"{digest}:{len(EICAR)}:{HASH_SIGNATURE}\n")
    if body_signature:  # name:target type (0 = any):offset:hex body
        (directory / "test.ndb").write_text(f"{BODY_SIGNATURE}:0:*:{EICAR.hex()}\n")


@dataclass
class ClamdServer:
    port: int
    socket_path: Path
    process: subprocess.Popen[bytes]
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.socket_path}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for_ready_line(process: subprocess.Popen[bytes], log: list[str], timeout: float) -> None:
    """Read clamd's log as it is written until it says it listens (or exits, or time is up)."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    pending = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"clamd did not start in {timeout} s")
            if not selector.select(left):
                continue
            data = os.read(process.stdout.fileno(), 65536)
            if not data:
                raise AssertionError(f"clamd exited with {process.wait()}")
            pending += data
            *lines, pending = pending.split(b"\n")
            log.extend(line.decode(errors="replace") for line in lines)
            if any(line.startswith(READY_LINE) for line in lines):
                return


def _ping(port: int, timeout: float) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout) as conn:
        conn.sendall(b"zPING\0")
        reply = b""
        while not reply.endswith(b"\0"):
            data = conn.recv(64)
            if not data:
                break
            reply += data
    if reply != b"PONG\0":
        raise AssertionError(f"clamd answered PING with {reply!r}")


def _keep_reading(stream: IO[bytes], log: list[str]) -> None:
    """Drain clamd's log after start-up, so a full pipe never blocks it."""
    for line in stream:
        log.append(line.decode(errors="replace").rstrip("\n"))


@contextmanager
def run_clamd(
    workdir: Path,
    *,
    stream_max_length: int = DEFAULT_STREAM_MAX_LENGTH,
    body_signature: bool = True,
    startup_timeout: float = 60.0,
) -> Iterator[ClamdServer]:
    """Start clamd on 127.0.0.1 (a free port) and a Unix socket in `workdir`; stop it after.
    MaxScanSize and MaxFileSize follow `stream_max_length`."""
    binary = require_clamd()
    workdir.mkdir(parents=True, exist_ok=True)
    write_signatures(workdir / "db", body_signature=body_signature)
    (workdir / "tmp").mkdir(exist_ok=True)
    port = _free_port()
    socket_path = workdir / "clamd.sock"
    config = workdir / "clamd.conf"
    config.write_text(
        "\n".join(
            [
                "Foreground yes",
                "LogVerbose yes",  # prints the "Listening daemon" line waited for
                f"TCPSocket {port}",
                "TCPAddr 127.0.0.1",
                f"LocalSocket {socket_path}",
                f"DatabaseDirectory {workdir / 'db'}",
                f"TemporaryDirectory {workdir / 'tmp'}",
                f"StreamMaxLength {stream_max_length}",
                f"MaxScanSize {stream_max_length}",
                f"MaxFileSize {stream_max_length}",
                "AlertExceedsMax yes",
                "SelfCheck 0",
                "",
            ]
        )
    )
    process = subprocess.Popen(  # noqa: S603 (our own binary and config)
        [binary, "--config-file", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    server = ClamdServer(port=port, socket_path=socket_path, process=process)
    drain: threading.Thread | None = None
    try:
        try:
            _wait_for_ready_line(process, server.log, startup_timeout)
            _ping(port, startup_timeout)
        except (AssertionError, OSError) as exc:
            log = "\n".join(server.log)
            raise AssertionError(f"clamd did not start ({exc}):\n{log}") from None
        assert process.stdout is not None
        drain = threading.Thread(
            target=_keep_reading, args=(process.stdout, server.log), daemon=True
        )
        drain.start()
        yield server
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if drain is not None:
            drain.join(5)
        if process.stdout is not None:
            process.stdout.close()
