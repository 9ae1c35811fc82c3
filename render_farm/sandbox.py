"""Running the render child: a time limit, a memory limit, a crash that stays contained.

The child is a fresh interpreter (`python -m render_farm.child`) in its own process group, so
a timeout kills it and anything it started. Celery's prefork pool processes are daemonic and
may not use `multiprocessing` children; a plain subprocess works everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from core.logs import get_logger
from render_farm.pipeline.errors import FailureCode, PipelineError

log = get_logger(__name__)

ProgressHandler = Callable[[str, int], Awaitable[None]]
# Address space for a child: VTK, Mesa and the mesh need about 0.7 GB per million triangles.
DEFAULT_MEMORY_LIMIT = 8 * 1024**3
STDERR_TAIL = 2000
CHILD_MODULE = "render_farm.child"
_PROJECT_ROOT = str(Path(__file__).resolve().parents[1])


def child_environment() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = _PROJECT_ROOT + (os.pathsep + path if path else "")
    env.setdefault("OMP_NUM_THREADS", "1")  # one render = one core; workers scale by process
    return env


async def run_child(
    payload: dict[str, Any],
    *,
    timeout: float,  # noqa: ASYNC109 - the child's deadline, enforced by killing it
    work_dir: Path,
    on_progress: ProgressHandler | None = None,
    module: str = CHILD_MODULE,
) -> dict[str, Any]:
    """Run the child (`python -m module`) on `payload`; return its result or raise
    `PipelineError`."""
    stderr_path = work_dir / "child.stderr"
    with stderr_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
            env=child_environment(),
            cwd=work_dir,
        )
    try:
        returncode, final = await asyncio.wait_for(
            _converse(process, payload, on_progress), timeout=timeout
        )
    except TimeoutError:
        await _kill(process)
        raise PipelineError(
            FailureCode.TIMEOUT, f"the render took longer than {timeout:g} s"
        ) from None
    except BaseException:
        await asyncio.shield(_kill(process))
        raise
    if final is not None and "error" in final:
        error = final["error"]
        raise PipelineError(FailureCode(error["code"]), str(error["message"]))
    if returncode != 0 or final is None or "result" not in final:
        reason = (
            f"killed by {signal.Signals(-returncode).name}"
            if returncode < 0
            else f"exit status {returncode}"
        )
        tail = stderr_path.read_bytes()[-STDERR_TAIL:].decode("utf-8", "replace")
        log.warning("render.child_crashed", reason=reason, stderr=tail)
        raise PipelineError(FailureCode.RENDER_CRASHED, f"the render process died ({reason})")
    result: dict[str, Any] = final["result"]
    return result


async def _converse(
    process: asyncio.subprocess.Process,
    payload: dict[str, Any],
    on_progress: ProgressHandler | None,
) -> tuple[int, dict[str, Any] | None]:
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(json.dumps(payload).encode())
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        await process.stdin.drain()
    process.stdin.close()
    final: dict[str, Any] | None = None
    async for line in process.stdout:
        try:
            message = json.loads(line)
        except ValueError:
            continue  # not ours: the protocol stream carries JSON lines only
        if not isinstance(message, dict):
            continue
        if "progress" in message and on_progress is not None:
            stage, percent = message["progress"]
            await on_progress(str(stage), int(percent))
        elif "result" in message or "error" in message:
            final = message
    return await process.wait(), final


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    await process.wait()
