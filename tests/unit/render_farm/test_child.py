"""The render child as the worker runs it: a real EGL render on the CPU (Mesa), a crash and a
hang that stay contained, the backend probe."""

from __future__ import annotations

import contextlib
import io
import zipfile
from pathlib import Path

import pytest
import trimesh
from PIL import Image

from render_farm.backend import GpuMode, select_backend
from render_farm.pipeline.errors import FailureCode, PipelineError
from render_farm.pipeline.render import image_variance
from render_farm.pipeline.run import PipelineLimits, PipelineRequest, PipelineResult
from render_farm.sandbox import run_child
from tests.cad_samples import cad_sample as sample

SIZE = (320, 240)


async def test_an_egl_render_on_the_cpu_is_not_blank(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    request = PipelineRequest(
        source=sample("angle_block.STL"),
        kind="stl",
        out_dir=out,
        limits=PipelineLimits(view_size=SIZE),
    )
    progress: list[tuple[str, int]] = []

    async def record(stage: str, percent: int) -> None:
        progress.append((stage, percent))

    raw = await run_child(
        {"backend": "egl", "egl_device": 0, "pipeline": request.to_dict()},
        timeout=120,
        work_dir=tmp_path,
        on_progress=record,
    )

    result = PipelineResult.from_dict(raw)
    files = {o.name: o for o in result.outputs}
    assert sorted(files) == [
        "model_glb", "thumb_100", "thumb_200", "thumb_400",
        "view_front", "view_iso", "view_right", "view_top",
    ]  # fmt: skip
    for view in ("view_iso", "view_front", "view_top", "view_right"):
        with Image.open(files[view].path) as image:
            assert image.size == SIZE
            assert image.format == "PNG"
        assert image_variance(files[view].path) > 100  # an object, not a blank canvas
    with Image.open(files["thumb_200"].path) as thumb:
        assert thumb.size == (200, 150)
    glb = trimesh.load(io.BytesIO(files["model_glb"].path.read_bytes()), file_type="glb")
    assert sum(len(g.faces) for g in glb.geometry.values()) == 704
    assert result.metadata["triangles"] == 704
    assert result.metadata["watertight"] is True
    stages = [stage for stage, _ in progress]
    assert stages[0] == "loading"
    assert stages[-1] == "simplifying"
    percents = [percent for _, percent in progress]
    assert percents == sorted(percents)


async def test_a_crashing_child_fails_with_a_code(tmp_path: Path) -> None:
    with pytest.raises(PipelineError) as caught:
        await run_child(
            {}, timeout=30, work_dir=tmp_path, module="tests.unit.render_farm.crashing_child"
        )
    assert caught.value.code is FailureCode.RENDER_CRASHED
    assert "SIGSEGV" in caught.value.message


async def test_a_child_past_its_time_limit_is_killed(tmp_path: Path) -> None:
    seen: list[tuple[str, int]] = []

    async def record(stage: str, percent: int) -> None:
        seen.append((stage, percent))

    with pytest.raises(PipelineError) as caught:
        await run_child(
            {},
            timeout=1.5,
            work_dir=tmp_path,
            on_progress=record,
            module="tests.unit.render_farm.hanging_child",
        )
    assert caught.value.code is FailureCode.TIMEOUT
    assert seen == [("loading", 10)]


async def test_a_corrupt_file_is_reported_by_the_child(tmp_path: Path) -> None:
    source = tmp_path / "junk.stl"
    source.write_bytes(b"solid junk\nthis is not an stl\n")
    request = PipelineRequest(source=source, kind="stl", out_dir=tmp_path)
    with pytest.raises(PipelineError) as caught:
        await run_child(
            {"backend": "egl", "egl_device": 0, "pipeline": request.to_dict()},
            timeout=60,
            work_dir=tmp_path,
        )
    assert caught.value.code is FailureCode.CORRUPT_FILE


async def test_the_probe_finds_a_working_backend() -> None:
    assert await select_backend(GpuMode.OFF, egl_device=0) == "osmesa"


def _zip_bomb(path: Path, *, inflated_mib: int) -> None:
    """A 3MF-shaped zip whose model part inflates to `inflated_mib` MiB of blanks."""
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open("3D/3dmodel.model", "w", force_zip64=True) as part,
    ):
        part.write(b'<?xml version="1.0"?><model><resources><object id="1"><mesh>')
        block = b" " * (4 << 20)
        for _ in range(inflated_mib // 4):
            part.write(block)


async def test_a_zip_bomb_disguised_as_3mf_hits_the_memory_limit(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.3mf"
    _zip_bomb(bomb, inflated_mib=1536)  # ~7 MB on disk
    limit = 1 << 30
    stages: list[str] = []

    async def record(stage: str, percent: int) -> None:
        stages.append(stage)

    # The limit leaves room to load a real model: the same child gets past loading.
    control = PipelineRequest(source=sample("featuretype.3MF"), kind="3mf", out_dir=tmp_path)
    with contextlib.suppress(PipelineError):  # rendering under 1 GiB may not work: not asked
        await run_child(
            {
                "backend": "egl",
                "egl_device": 0,
                "memory_limit": limit,
                "pipeline": control.to_dict(),
            },
            timeout=120,
            work_dir=tmp_path,
            on_progress=record,
        )
    assert "analysing" in stages

    request = PipelineRequest(source=bomb, kind="3mf", out_dir=tmp_path)
    with pytest.raises(PipelineError) as caught:
        await run_child(
            {
                "backend": "egl",
                "egl_device": 0,
                "memory_limit": limit,
                "pipeline": request.to_dict(),
            },
            timeout=120,
            work_dir=tmp_path,
        )
    assert caught.value.code is FailureCode.TOO_LARGE
