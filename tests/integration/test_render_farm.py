"""The render farm in the embedded mode, on SQLite and PostgreSQL: a version announced by the
scan worker is rendered by the local pool (child processes, EGL on Mesa), its job and the
version's metadata are written, progress and completion arrive on the bus; the REST routes
(job, outputs, re-render) with their authorisation; failures end in a code, not a crash."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from aiohttp.test_utils import TestClient
from PIL import Image

from api.keys import BLOBS, BUS, DATABASE, KEYS, RENDER_FARM
from core.bus import Event
from core.permissions import Role
from core.settings import Settings
from db.models.files import FileVersion, ScanStatus
from db.models.render import RenderJob, RenderStatus
from render_farm.jobs import create_job_for_scanned_version
from render_farm.runner import RenderOptions, run_render_job
from tests.cad_samples import cad_sample as sample
from tests.documents import add_version, app_of
from tests.identity import sign_in
from tests.tus import TusClient

Client = TestClient[Any, Any]
RENDER_TIMEOUT = 90
VIEWS = ["view_front", "view_iso", "view_right", "view_top"]
OUTPUTS = sorted([*VIEWS, "thumb_100", "thumb_200", "thumb_400", "model_glb"])
STAGES = ["downloading", "loading", "analysing", "rendering", "simplifying", "uploading"]


class Recorder:
    """Events of a pattern on the app's bus, with a wait for one that matches."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Condition()

    async def record(self, event: Event) -> None:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    async def wait_for(
        self, match: Callable[[Event], bool], timeout: float = RENDER_TIMEOUT
    ) -> Event:
        async def first() -> Event:
            async with self._changed:
                while True:
                    for event in self.events:
                        if match(event):
                            return event
                    await self._changed.wait()

        return await asyncio.wait_for(first(), timeout)


def ended(version_id: UUID) -> Callable[[Event], bool]:
    return lambda e: (
        e.type in ("render.completed", "render.failed") and e.data["version_id"] == str(version_id)
    )


@asynccontextmanager
async def render_events(client: Client) -> AsyncIterator[Recorder]:
    recorder = Recorder()
    subscription = await app_of(client)[BUS].subscribe("render.*", recorder.record)
    try:
        yield recorder
    finally:
        await subscription.close()


async def upload(
    client: Client, owner_id: UUID, name: str, kind: str, data: bytes | None = None
) -> FileVersion:
    return await add_version(
        client,
        owner_id=owner_id,
        data=sample(name).read_bytes() if data is None else data,
        name=name,
        mime_type="application/octet-stream",
        kind=kind,
        scan_status=ScanStatus.UNSCANNED,  # no scanner: the scan worker announces it at once
    )


@pytest.mark.timeout(180)
async def test_an_uploaded_stl_is_rendered_by_the_local_pool(
    client: Client, settings: Settings
) -> None:
    app = app_of(client)
    owner = await sign_in(settings.database_url, app[KEYS])
    other = await sign_in(settings.database_url, app[KEYS])
    staff = await sign_in(settings.database_url, app[KEYS], role=Role.EDITOR)

    async with render_events(client) as recorder:
        version = await upload(client, owner.user_id, "angle_block.STL", "stl")
        done = await recorder.wait_for(ended(version.id))

    assert done.type == "render.completed", done.data
    file_id = version.file_id  # type: ignore[attr-defined]
    with app[DATABASE].activated():
        [job] = await RenderJob.filter(version_id=version.id)
        stored = await FileVersion.get(id=version.id)
    assert job.status is RenderStatus.SUCCEEDED
    assert (job.progress, job.stage, job.attempts, job.error_code) == (100, "done", 1, "")
    assert job.renderer in ("egl", "osmesa")
    assert sorted(job.outputs) == OUTPUTS
    assert job.metadata["triangles"] == 704
    assert job.metadata["watertight"] is True
    assert stored.metadata["geometry"]["triangles"] == 704
    assert stored.metadata["geometry"]["units"] == "in"
    assert stored.metadata["previews"] == {"job_id": str(job.id), "outputs": job.outputs}
    assert done.data["job_id"] == str(job.id)
    assert done.data["file_id"] == str(file_id)
    assert done.data["outputs"] == job.outputs
    assert done.data["metadata"]["triangles"] == 704

    progress = [e.data for e in recorder.events if e.type == "render.progress"]
    assert [p["progress"] for p in progress] == sorted(p["progress"] for p in progress)
    assert [s for s in STAGES if s in {p["stage"] for p in progress}] == STAGES
    assert {p["job_id"] for p in progress} == {str(job.id)}
    assert {(p["file_id"], p["version_id"]) for p in progress} == {(str(file_id), str(version.id))}

    response = await client.get(f"/api/v1/render-jobs/{job.id}", headers=owner.headers)
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "succeeded"
    assert body["version"] == 1
    assert body["outputs"]["view_iso"] == f"/api/v1/render-jobs/{job.id}/outputs/view_iso"
    assert body["metadata"]["triangles"] == 704

    image = await client.get(body["outputs"]["view_iso"], headers=owner.headers)
    assert image.status == 200
    assert image.headers["Content-Type"] == "image/png"
    assert "max-age=31536000" in image.headers["Cache-Control"]
    assert image.headers["ETag"] == f'"{job.outputs["view_iso"]}"'
    with Image.open(io.BytesIO(await image.read())) as png:
        assert png.size == (1024, 768)
    glb = await client.get(body["outputs"]["model_glb"], headers=staff.headers)
    assert glb.status == 200
    assert glb.headers["Content-Type"] == "model/gltf-binary"
    assert (await glb.read())[:4] == b"glTF"

    assert (await client.get(f"/api/v1/render-jobs/{job.id}", headers=staff.headers)).status == 200
    refused = await client.get(f"/api/v1/render-jobs/{job.id}", headers=other.headers)
    assert refused.status == 404
    assert (await refused.json())["error"]["code"] == "render_job_not_found"
    hidden = await client.get(body["outputs"]["view_iso"], headers=other.headers)
    assert hidden.status == 404
    missing = await client.get(f"/api/v1/render-jobs/{job.id}/outputs/nope", headers=owner.headers)
    assert (await missing.json())["error"]["code"] == "render_output_not_found"
    assert (await client.get(f"/api/v1/render-jobs/{job.id}")).status == 401


@pytest.mark.timeout(180)
async def test_a_step_file_is_rendered(client: Client, settings: Settings) -> None:
    app = app_of(client)
    owner = await sign_in(settings.database_url, app[KEYS])
    async with render_events(client) as recorder:
        version = await upload(client, owner.user_id, "base_interface_AP203.STEP", "step")
        done = await recorder.wait_for(ended(version.id))
    assert done.type == "render.completed", done.data
    assert done.data["metadata"]["units"] == "m"
    assert done.data["metadata"]["size"] == pytest.approx([0.5994, 0.6387, 0.0048], abs=1e-3)


@pytest.mark.timeout(180)
async def test_re_render_for_the_owner_and_staff_only(client: Client, settings: Settings) -> None:
    app = app_of(client)
    owner = await sign_in(settings.database_url, app[KEYS])
    other = await sign_in(settings.database_url, app[KEYS])
    staff = await sign_in(settings.database_url, app[KEYS], role=Role.EDITOR)
    version = await add_version(
        client,
        owner_id=owner.user_id,
        data=sample("angle_block.STL").read_bytes(),
        name="angle_block.STL",
        kind="stl",
        scan_status=ScanStatus.CLEAN,  # scanned earlier: no automatic job now
    )
    file_id = version.file_id  # type: ignore[attr-defined]
    url = f"/api/v1/files/{file_id}/versions/1/render"

    refused = await client.post(url, headers=other.headers)
    assert refused.status == 404
    assert (await refused.json())["error"]["code"] == "file_not_found"
    with app[DATABASE].activated():
        assert await RenderJob.filter(version_id=version.id).count() == 0

    async with render_events(client) as recorder:
        accepted = await client.post(url, headers=owner.headers)
        assert accepted.status == 202
        first = await accepted.json()
        assert first["status"] == "queued"
        assert first["requested_by"] == str(owner.user_id)
        busy = await client.post(url, headers=staff.headers)
        assert busy.status == 409
        assert (await busy.json())["error"] == {
            "code": "render_in_progress",
            "message": "A render of this version is already queued or running",
            "details": {"job_id": first["id"]},
        }
        done = await recorder.wait_for(ended(version.id))
    assert (done.type, done.data["job_id"]) == ("render.completed", first["id"])

    by_staff = await client.post(url, headers=staff.headers)
    assert by_staff.status == 202
    second = await by_staff.json()
    assert second["requested_by"] == str(staff.user_id)
    with app[DATABASE].activated():
        assert await RenderJob.filter(version_id=version.id).count() == 2
    nothing = await client.post(f"/api/v1/files/{file_id}/versions/9/render", headers=owner.headers)
    assert (await nothing.json())["error"]["code"] == "version_not_found"


@pytest.mark.timeout(120)
async def test_a_corrupt_upload_fails_with_a_code(client: Client, settings: Settings) -> None:
    app = app_of(client)
    owner = await sign_in(settings.database_url, app[KEYS])
    data = sample("angle_block.STL").read_bytes()
    async with render_events(client) as recorder:
        version = await upload(client, owner.user_id, "cut.stl", "stl", data[: len(data) // 2])
        done = await recorder.wait_for(ended(version.id))
    assert done.type == "render.failed"
    with app[DATABASE].activated():
        [job] = await RenderJob.filter(version_id=version.id)
        stored = await FileVersion.get(id=version.id)
    assert done.data == {
        "job_id": str(job.id),
        "file_id": str(version.file_id),  # type: ignore[attr-defined]
        "version_id": str(version.id),
        "owner_id": str(owner.user_id),
        "error_code": "corrupt_file",
    }
    assert (job.status, job.error_code) == (RenderStatus.FAILED, "corrupt_file")
    assert job.outputs == {}
    assert "geometry" not in stored.metadata
    body = await (await client.get(f"/api/v1/render-jobs/{job.id}", headers=owner.headers)).json()
    assert (body["status"], body["error_code"]) == ("failed", "corrupt_file")


async def test_kinds_the_farm_does_not_render_get_no_job(
    client: Client, settings: Settings
) -> None:
    app = app_of(client)
    owner = await sign_in(settings.database_url, app[KEYS])
    scanned = Recorder()
    subscription = await app[BUS].subscribe("file.scanned", scanned.record)
    try:
        drawing = await upload(client, owner.user_id, "1002_tray_bottom.DXF", "dxf")
        text = await add_version(
            client, owner_id=owner.user_id, data=b"hello", scan_status=ScanStatus.UNSCANNED
        )
        for version in (drawing, text):
            await scanned.wait_for(lambda e, v=version: e.data["version_id"] == str(v.id), 10)
    finally:
        await subscription.close()
    await app[RENDER_FARM].drain()  # the farm has handled both announcements
    with app[DATABASE].activated():
        assert await RenderJob.filter(version_id__in=[drawing.id, text.id]).count() == 0


async def _run_with_child(
    client: Client, tmp_path: Path, module: str, time_limit: float
) -> tuple[RenderJob, list[Event]]:
    app = app_of(client)
    owner = await sign_in(app[DATABASE].url, app[KEYS])
    version = await add_version(
        client,
        owner_id=owner.user_id,
        data=sample("angle_block.STL").read_bytes(),
        name="a.stl",
        kind="stl",
        scan_status=ScanStatus.CLEAN,  # announced by nobody: the test runs the job itself
    )
    options = RenderOptions(backend="egl", time_limit=time_limit, child_module=module)
    async with render_events(client) as recorder:
        with app[DATABASE].activated():
            job_id = await create_job_for_scanned_version(version_id=version.id)
            assert job_id is not None
            outcome = await run_render_job(job_id, options=options, store=app[BLOBS], bus=app[BUS])
            job = await RenderJob.get(id=job_id)
        await recorder.wait_for(ended(version.id), timeout=10)
    assert outcome.status == "failed"
    return job, recorder.events


async def test_a_crashing_render_fails_the_job_not_the_service(
    client: Client, tmp_path: Path
) -> None:
    job, events = await _run_with_child(
        client, tmp_path, "tests.unit.render_farm.crashing_child", 30
    )
    assert (job.status, job.error_code) == (RenderStatus.FAILED, "render_crashed")
    assert "SIGSEGV" in job.error_message
    assert events[-1].data["error_code"] == "render_crashed"
    assert (await client.get("/healthz")).status == 200


async def test_a_render_past_its_time_limit_times_out(client: Client, tmp_path: Path) -> None:
    job, events = await _run_with_child(
        client, tmp_path, "tests.unit.render_farm.hanging_child", 1.5
    )
    assert (job.status, job.error_code) == (RenderStatus.FAILED, "timeout")
    assert [e.data.get("stage") for e in events if e.type == "render.progress"] == [
        "downloading",
        "loading",
    ]
    assert events[-1].data["error_code"] == "timeout"


@pytest.mark.timeout(180)
async def test_stl_and_step_uploaded_over_tus_get_previews(
    client: Client, settings: Settings
) -> None:
    """The whole chain: tus upload -> type check -> version -> scan worker (no scanner:
    unscanned) -> render job -> previews, with the kind the upload's sniffer decided."""
    owner = await sign_in(settings.database_url, app_of(client)[KEYS])
    tus = TusClient(session=client, token=owner.token)
    async with render_events(client) as recorder:
        for name in ("angle_block.STL", "featuretype.STEP"):
            data = sample(name).read_bytes()
            location = await tus.create(len(data), filename=name)
            response = await tus.patch(location, 0, data)
            assert response.status == 204

        def both_ended(_: Event) -> bool:
            return (
                sum(e.type in ("render.completed", "render.failed") for e in recorder.events) == 2
            )

        await recorder.wait_for(both_ended)
    done = [e for e in recorder.events if e.type in ("render.completed", "render.failed")]
    assert [e.type for e in done] == ["render.completed", "render.completed"]
    triangles = sorted(e.data["metadata"]["triangles"] for e in done)
    assert triangles[0] == 704  # the STL; the STEP's count depends on its tessellation
    for event in done:
        body = await (
            await client.get(f"/api/v1/render-jobs/{event.data['job_id']}", headers=owner.headers)
        ).json()
        assert body["status"] == "succeeded"
        assert len(body["outputs"]) == 8


async def test_render_jobs_are_listed_to_those_who_may_read_their_files(
    client: Client, settings: Settings
) -> None:
    app = app_of(client)
    owner = await sign_in(settings.database_url, app[KEYS])
    other = await sign_in(settings.database_url, app[KEYS])
    staff = await sign_in(settings.database_url, app[KEYS], role=Role.EDITOR)
    versions = [
        await add_version(
            client,
            owner_id=who.user_id,
            data=f"solid {n}\nendsolid {n}\n".encode(),
            name=f"part{n}.stl",
            kind="stl",
            scan_status=ScanStatus.CLEAN,  # scanned earlier: no automatic job
        )
        for n, who in enumerate([owner, owner, other])
    ]
    with app[DATABASE].activated():
        jobs = [
            await RenderJob.create(file_id=v.file_id, version_id=v.id)  # type: ignore[attr-defined]
            for v in versions
        ]
        await RenderJob.filter(id=jobs[0].id).update(status=RenderStatus.FAILED)

    async def listed(who: Any, **query: str) -> dict[str, Any]:
        response = await client.get("/api/v1/render-jobs", params=query, headers=who.headers)
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body

    mine = await listed(owner)
    assert [j["id"] for j in mine["items"]] == [str(jobs[1].id), str(jobs[0].id)]
    assert mine["next_cursor"] is None
    assert mine["items"][0]["version"] == 1
    assert [j["id"] for j in (await listed(other))["items"]] == [str(jobs[2].id)]
    everyone = await listed(staff)
    assert {j["id"] for j in everyone["items"]} >= {str(j.id) for j in jobs}
    failed = await listed(staff, status="failed")
    assert str(jobs[0].id) in [j["id"] for j in failed["items"]]
    assert {j["status"] for j in failed["items"]} == {"failed"}
    of_file = await listed(staff, file_id=str(versions[1].file_id))  # type: ignore[attr-defined]
    assert [j["id"] for j in of_file["items"]] == [str(jobs[1].id)]
    first_page = await listed(owner, limit="1")
    assert [j["id"] for j in first_page["items"]] == [str(jobs[1].id)]
    second_page = await listed(owner, limit="1", before=first_page["next_cursor"])
    assert [j["id"] for j in second_page["items"]] == [str(jobs[0].id)]
    assert second_page["next_cursor"] is None

    bad = await client.get("/api/v1/render-jobs", params={"status": "nope"}, headers=owner.headers)
    assert bad.status == 422
    assert (await bad.json())["error"]["code"] == "validation_failed"
    assert (await client.get("/api/v1/render-jobs")).status == 401
