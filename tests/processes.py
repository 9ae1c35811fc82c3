"""Real `ideinstein serve` processes for multi-node tests and fault drills."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import aiohttp


@dataclass
class ServeProcess:
    port: int
    process: asyncio.subprocess.Process
    log_path: Path
    log: BinaryIO = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def kill(self) -> None:
        """SIGKILL: no goodbye to clients, Redis or the database."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()
        self.log.close()

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                await self.kill()
        self.log.close()
        return self.process.returncode or 0


async def start_serve(
    *, port: int, env: dict[str, str], workdir: Path, name: str = "node"
) -> ServeProcess:
    log_path = workdir / f"{name}.log"
    log = log_path.open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api.cli",
        "serve",
        "--no-migrate",
        cwd=workdir,
        env={**os.environ, **env, "PORT": str(port), "LOG_FORMAT": "json"},
        stdout=log,
        stderr=log,
    )
    served = ServeProcess(port=port, process=process, log_path=log_path, log=log)
    try:
        await asyncio.wait_for(_healthy(served), 60)
    except (TimeoutError, AssertionError) as exc:
        await served.kill()
        raise AssertionError(f"{name} did not start ({exc}):\n{log_path.read_text()}") from None
    return served


async def _healthy(served: ServeProcess) -> None:
    async with aiohttp.ClientSession() as session:
        while True:
            if served.process.returncode is not None:
                raise AssertionError(f"exited with {served.process.returncode}")
            try:
                async with session.get(f"{served.url}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)  # starting up: nothing to wait on but the clock
