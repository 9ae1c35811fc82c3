"""The facts and the web GLB made beside the views: forked for a big mesh, the same outputs as
in-process, and the real error when the work fails."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import trimesh

from render_farm.pipeline import geometry
from render_farm.pipeline.analyse import merge_vertices
from render_farm.pipeline.geometry import GeometryWork, make_geometry_outputs
from render_farm.pipeline.mesh import TriangleMesh


def sphere() -> TriangleMesh:
    return merge_vertices(trimesh.creation.icosphere(subdivisions=4))  # 5,120 faces


def test_a_forked_worker_gives_what_the_work_gives_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(geometry, "FORK_ABOVE_FACES", 0)
    here = make_geometry_outputs(
        sphere(), declared_units="mm", glb_path=tmp_path / "here.glb", web_max_faces=1_000
    )

    work = GeometryWork(
        sphere(), declared_units="mm", glb_path=tmp_path / "forked.glb", web_max_faces=1_000
    )
    assert work.forked
    forked = work.result()

    assert forked.facts == here.facts
    assert forked.web_triangles == here.web_triangles <= 1_000
    assert (tmp_path / "forked.glb").read_bytes() == (tmp_path / "here.glb").read_bytes()
    glb = trimesh.load_scene(io.BytesIO((tmp_path / "forked.glb").read_bytes()), file_type="glb")
    assert sum(len(g.faces) for g in glb.geometry.values()) == forked.web_triangles


def test_a_small_mesh_is_done_in_process(tmp_path: Path) -> None:
    work = GeometryWork(
        sphere(), declared_units=None, glb_path=tmp_path / "m.glb", web_max_faces=100_000
    )
    assert not work.forked
    assert work.result().web_triangles == 5_120


def test_a_failing_worker_raises_the_real_error_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(geometry, "FORK_ABOVE_FACES", 0)
    work = GeometryWork(
        sphere(), declared_units=None, glb_path=tmp_path / "missing" / "m.glb", web_max_faces=500
    )
    with pytest.raises(FileNotFoundError):
        work.result()
    assert work._process is None  # collected


def test_closing_stops_a_running_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(geometry, "FORK_ABOVE_FACES", 0)
    work = GeometryWork(
        sphere(), declared_units=None, glb_path=tmp_path / "m.glb", web_max_faces=500
    )
    work.close()
    assert work._process is None
