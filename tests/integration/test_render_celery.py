"""The production path: a real `ideinstein worker` process (Celery) on the real Redis renders
what the hub queues; progress and completion reach the hub over the Redis bus; a worker
process killed mid-job has its job redelivered and finished."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.app import create_app
from api.keys import DATABASE, KEYS
from core.settings import Settings
from db.models.files import FileVersion
from db.models.render import RenderJob, RenderStatus
from tests.cad_samples import cad_sample
from tests.conftest import SettingsFactory
from tests.identity import sign_in
from tests.integration.test_render_farm import ended, render_events, upload
from tests.sockets import HubClient
from tests.tus import TusClient

pytestmark = [pytest.mark.databases("postgres"), pytest.mark.timeout(240)]

Client = TestClient[Any, Any]


@pytest.fixture
def hub_settings(
    make_settings: SettingsFactory, migrated_database_url: str, redis_url: str, redis_prefix: str
) -> Settings:
    return make_settings(
        database_url=migrated_database_url, redis_url=redis_url, redis_prefix=redis_prefix
    )


@pytest.fixture
async def hub(aiohttp_client: Any, hub_settings: Settings) -> Client:
    client: Client = await aiohttp_client(create_app(hub_settings))
    return client


class Worker:
    """`python -m api.cli worker` in its own process group, logging to a file."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self.process: asyncio.subprocess.Process | None = None
        self.log_path = workdir / "worker.log"

    async def start(self) -> None:
        env = {
            **os.environ,
            "ENVIRONMENT": "test",
            "DATA_DIR": str(self.settings.data_dir),
            "DATABASE_URL": self.settings.database_url,
            "STORAGE_URL": self.settings.storage_url,
            "REDIS_URL": self.settings.redis_url or "",
            "REDIS_PREFIX": self.settings.redis_prefix,
            "LOG_FORMAT": "json",
        }
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "api.cli", "worker", "--concurrency", "1",
                env=env, cwd=self.workdir, stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip

    def pool_process(self) -> int:
        """The pid of the pool process that runs tasks (a child of the main worker)."""
        assert self.process is not None
        children = _children(self.process.pid)
        assert len(children) == 1, children
        return children[0]

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 20)
        except TimeoutError:
            os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


@pytest.fixture
async def worker(hub_settings: Settings, tmp_path: Path) -> AsyncIterator[Worker]:
    running = Worker(hub_settings, tmp_path)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
        sys.stderr.write(running.log_path.read_text(errors="replace")[-6000:])  # on failure


async def test_a_worker_process_renders_stl_and_step(
    hub: Client, hub_settings: Settings, worker: Worker
) -> None:
    app = hub.app
    assert app is not None
    owner = await sign_in(hub_settings.database_url, app[KEYS])
    async with render_events(hub) as recorder:
        stl = await upload(hub, owner.user_id, "angle_block.STL", "stl")
        step = await upload(hub, owner.user_id, "featuretype.STEP", "step")
        done_stl = await recorder.wait_for(ended(stl.id), timeout=180)
        done_step = await recorder.wait_for(ended(step.id), timeout=180)

    assert (done_stl.type, done_step.type) == ("render.completed", "render.completed")
    with app[DATABASE].activated():
        jobs = {job.version_id: job for job in await RenderJob.all()}  # type: ignore[attr-defined]
        stored = await FileVersion.get(id=step.id)
    assert set(jobs) == {stl.id, step.id}
    for job in jobs.values():
        assert (job.status, job.progress, job.attempts) == (RenderStatus.SUCCEEDED, 100, 1)
        assert job.renderer in ("egl", "osmesa")
        assert len(job.outputs) == 8
    assert done_stl.data["metadata"]["triangles"] == 704
    assert stored.metadata["geometry"]["units"] == "m"
    assert stored.metadata["geometry"]["size"] == pytest.approx([0.127, 0.0635, 0.0349], abs=1e-3)
    # Progress travelled from the worker process over Redis, in order, per job.
    for version in (stl, step):
        progress = [
            e.data["progress"]
            for e in recorder.events
            if e.type == "render.progress" and e.data["version_id"] == str(version.id)
        ]
        assert progress[0] == 0
        assert progress[-1] == 90
        assert progress == sorted(progress)
    response = await hub.get(f"/api/v1/render-jobs/{jobs[stl.id].id}", headers=owner.headers)
    assert (await response.json())["status"] == "succeeded"


async def test_a_killed_worker_process_has_its_job_redelivered(
    hub: Client, hub_settings: Settings, worker: Worker
) -> None:
    app = hub.app
    assert app is not None
    owner = await sign_in(hub_settings.database_url, app[KEYS])
    async with render_events(hub) as recorder:
        version = await upload(hub, owner.user_id, "fandisk.obj", "obj")
        await recorder.wait_for(
            lambda e: e.type == "render.progress" and e.data["stage"] == "loading", timeout=120
        )
        os.kill(worker.pool_process(), signal.SIGKILL)  # mid-job, no goodbye
        done = await recorder.wait_for(ended(version.id), timeout=180)

    assert done.type == "render.completed", done.data
    with app[DATABASE].activated():
        [job] = await RenderJob.filter(version_id=version.id)
    assert (job.status, job.attempts) == (RenderStatus.SUCCEEDED, 2)
    assert job.metadata["triangles"] == 5750


async def test_through_the_portal_api_with_progress_live_on_the_socket(
    hub: Client, hub_settings: Settings, worker: Worker
) -> None:
    """The issue's "done when": STL and STEP uploaded with tus, rendered by the worker process,
    progress and completion arriving on the owner's socket over the Redis bus."""
    app = hub.app
    assert app is not None
    owner = await sign_in(hub_settings.database_url, app[KEYS])
    socket = await HubClient().connect(str(hub.make_url("/")), owner.token)
    try:
        tus = TusClient(hub, owner.token)
        file_ids = {}
        for name in ("angle_block.STL", "featuretype.STEP"):
            data = cad_sample(name).read_bytes()
            location = await tus.create(len(data), filename=name)
            response = await tus.patch(location, 0, data)
            assert response.status == 204, response.status
            file_ids[response.headers["X-File-Id"]] = name
        completed = {}
        progress: dict[str, list[int]] = {file_id: [] for file_id in file_ids}
        while len(completed) < len(file_ids):
            for event in socket.pending("render:progress"):
                progress[event["file_id"]].append(event["progress"])
            done = await socket.next("render:completed", timeout=180)
            completed[done["file_id"]] = done
        for event in socket.pending("render:progress"):
            progress[event["file_id"]].append(event["progress"])
    finally:
        await socket.close()

    assert socket.pending("render:failed") == []
    for file_id, seen in progress.items():
        assert seen, f"no live progress for {file_ids[file_id]}"
        assert seen == sorted(seen)
    for done in completed.values():
        job = await (
            await hub.get(f"/api/v1/render-jobs/{done['job_id']}", headers=owner.headers)
        ).json()
        assert job["status"] == "succeeded"
        assert {"view_iso", "view_front", "view_top", "view_right", "model_glb"} <= set(
            job["outputs"]
        ), job["outputs"]
        assert job["metadata"]["triangles"] > 0
        png = await hub.get(
            f"/api/v1/render-jobs/{done['job_id']}/outputs/view_iso", headers=owner.headers
        )
        assert png.status == 200
        assert (await png.read()).startswith(b"\x89PNG")
