"""The pure pipeline on real CAD exports and on broken input: loading, analysis, GLB export."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import trimesh

from render_farm.pipeline.analyse import analyse, guess_units, merge_vertices
from render_farm.pipeline.errors import FailureCode, PipelineError
from render_farm.pipeline.export import export_glb, simplify
from render_farm.pipeline.load import is_renderable, load_model
from render_farm.pipeline.mesh import TriangleMesh
from tests.cad_samples import cad_sample as sample

LIMIT = 5_000_000
BUDGET = 500_000


def load(path: Path, kind: str, *, max_triangles: int = LIMIT) -> TriangleMesh:
    return load_model(path, kind=kind, max_triangles=max_triangles, brep_face_budget=BUDGET).mesh


@pytest.mark.parametrize(
    ("name", "kind", "triangles"),
    [
        ("angle_block.STL", "stl", 704),  # binary, although its header starts with "solid"
        ("1002_tray_bottom.STL", "stl", 4520),  # ASCII
        ("fandisk.obj", "obj", 5750),
        ("octagonal_pocket.ply", "ply", 3262),
        ("featuretype.3MF", "3mf", 2208),
        ("pins.glb", "glb", 3408),  # 2 meshes, 8 nodes: instances are all in
    ],
)
def test_mesh_formats_load_every_triangle(name: str, kind: str, triangles: int) -> None:
    mesh = load(sample(name), kind)
    assert len(mesh.faces) == triangles
    assert np.isfinite(mesh.vertices).all()


@pytest.mark.parametrize(
    ("name", "kind", "size"),
    [
        ("featuretype.STEP", "step", [0.127, 0.0635, 0.034925]),
        ("base_interface_AP203.STEP", "stp", [0.599408, 0.638662, 0.004763]),
        ("box_sides.STEP", "step", [0.18415, 0.1143, 0.09525]),  # an assembly of 7 products
    ],
)
def test_step_is_tessellated_in_metres(name: str, kind: str, size: list[float]) -> None:
    model = load_model(sample(name), kind=kind, max_triangles=LIMIT, brep_face_budget=BUDGET)
    facts = analyse(model.mesh, declared_units=model.declared_units)
    assert facts.size == pytest.approx(size, abs=1e-4)
    assert (facts.units, facts.units_source) == ("m", "file")
    assert 1_000 < facts.triangles <= BUDGET
    assert facts.watertight is True


def test_iges_assembly_loads() -> None:
    facts = analyse(load(sample("twoCars.igs"), "iges"), declared_units=None)
    assert facts.triangles > 500
    assert facts.components >= 2  # two cars with their wheels


def test_a_fine_step_stays_within_the_face_budget() -> None:
    model = load_model(
        sample("featuretype.STEP"), kind="step", max_triangles=LIMIT, brep_face_budget=20_000
    )
    assert 0 < len(model.mesh.faces) <= 20_000


def test_off_and_gltf_made_by_trimesh_load(tmp_path: Path) -> None:
    box = trimesh.creation.box(extents=(10, 20, 30))
    (tmp_path / "box.off").write_bytes(box.export(file_type="off").encode())
    (tmp_path / "box.gltf").write_bytes(
        trimesh.Scene(box).export(file_type="gltf", embed_buffers=True)["model.gltf"]
    )
    assert len(load(tmp_path / "box.off", "off").faces) == 12
    assert len(load(tmp_path / "box.gltf", "gltf").faces) == 12


def test_analysis_of_a_watertight_part() -> None:
    facts = analyse(load(sample("angle_block.STL"), "stl"), declared_units=None)
    assert facts.triangles == 704
    assert facts.watertight is True
    assert facts.components == 1
    assert facts.volume == pytest.approx(1.1455, abs=1e-3)
    assert facts.size == pytest.approx([1.338583, 1.0, 1.351984], abs=1e-5)
    assert (facts.units, facts.units_source) == ("in", "guess")


def test_units_come_from_the_file_when_it_says() -> None:
    model = load_model(
        sample("featuretype.3MF"), kind="3mf", max_triangles=LIMIT, brep_face_budget=BUDGET
    )
    facts = analyse(model.mesh, declared_units=model.declared_units)
    assert (facts.units, facts.units_source) == ("inch", "file")
    assert facts.size == pytest.approx([5.0, 2.5, 1.375])


def test_units_guess_follows_the_size() -> None:
    assert guess_units(np.array([355.6, 3.175, 355.6])) == "mm"
    assert guess_units(np.array([1.3, 1.0, 1.35])) == "in"
    assert guess_units(np.array([0.127, 0.06, 0.03])) == "m"


def test_an_open_mesh_has_no_volume() -> None:
    box = trimesh.creation.box()
    facts = analyse(trimesh.Trimesh(box.vertices, box.faces[:-2]), declared_units=None)
    assert facts.watertight is False
    assert facts.volume is None


# -- refused input ------------------------------------------------------------------------------


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind", ["stl", "obj", "ply", "off", "glb", "gltf", "3mf", "step", "iges"])
def test_random_bytes_are_a_corrupt_file(tmp_path: Path, kind: str) -> None:
    path = _write(tmp_path, f"junk.{kind}", np.random.default_rng(7).bytes(4096))
    with pytest.raises(PipelineError) as caught:
        load(path, kind)
    assert caught.value.code is FailureCode.CORRUPT_FILE


@pytest.mark.parametrize(
    ("name", "kind"),
    [("angle_block.STL", "stl"), ("1002_tray_bottom.STL", "stl"), ("octagonal_pocket.ply", "ply")],
)
def test_truncated_files_are_corrupt(tmp_path: Path, name: str, kind: str) -> None:
    data = sample(name).read_bytes()
    path = _write(tmp_path, f"cut.{kind}", data[: len(data) // 2])
    with pytest.raises(PipelineError) as caught:
        load(path, kind)
    assert caught.value.code is FailureCode.CORRUPT_FILE


def test_an_empty_file_is_corrupt(tmp_path: Path) -> None:
    with pytest.raises(PipelineError) as caught:
        load(_write(tmp_path, "empty.stl", b""), "stl")
    assert caught.value.code is FailureCode.CORRUPT_FILE


def test_a_2d_drawing_is_not_rendered() -> None:
    assert is_renderable("dxf") is False
    with pytest.raises(PipelineError) as caught:
        load(sample("1002_tray_bottom.DXF"), "dxf")
    assert caught.value.code is FailureCode.UNSUPPORTED_FORMAT


def test_a_binary_stl_over_the_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    # The header claims 10M triangles and the size agrees; only the header is read.
    count = 10_000_000
    path = tmp_path / "huge.stl"
    with path.open("wb") as file:
        file.write(b"\0" * 80 + struct.pack("<I", count))
        file.truncate(84 + 50 * count)  # sparse: no disk used
    with pytest.raises(PipelineError) as caught:
        load(path, "stl")
    assert caught.value.code is FailureCode.TOO_LARGE
    assert "10000000 triangles" in caught.value.message


def test_a_mesh_over_the_triangle_limit_is_too_large() -> None:
    with pytest.raises(PipelineError) as caught:
        load(sample("fandisk.obj"), "obj", max_triangles=5_000)
    assert caught.value.code is FailureCode.TOO_LARGE


def test_a_zip_that_is_not_a_3mf_is_corrupt(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("3D/3dmodel.model", b"<model>" + b" " * 1_000_000)
    with pytest.raises(PipelineError) as caught:
        load(_write(tmp_path, "fake.3mf", buffer.getvalue()), "3mf")
    assert caught.value.code is FailureCode.CORRUPT_FILE


# -- the web GLB ----------------------------------------------------------------------------------


def test_a_big_mesh_is_decimated_to_the_budget_and_reloads() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=6)  # 81,920 faces
    web = simplify(sphere, max_faces=10_000)
    assert 9_000 <= len(web.faces) <= 10_000
    reloaded = trimesh.load(io.BytesIO(export_glb(web)), file_type="glb", process=False)
    [mesh] = reloaded.geometry.values()
    assert len(mesh.faces) == len(web.faces)
    assert mesh.extents == pytest.approx(sphere.extents, rel=0.02)


def test_a_small_mesh_is_exported_as_is() -> None:
    box = trimesh.creation.box()
    assert simplify(box, max_faces=100) is box
    data = export_glb(box)
    assert data[:4] == b"glTF"


def test_components_count_separate_pieces() -> None:
    two = trimesh.util.concatenate(
        [trimesh.creation.box(), trimesh.creation.box().apply_translation([5, 0, 0])]
    )
    assert analyse(two, declared_units=None).components == 2


@pytest.mark.parametrize("name", ["angle_block.STL", "1002_tray_bottom.STL"])
def test_an_stl_is_read_as_trimesh_reads_it(name: str) -> None:
    # angle_block is binary (read without trimesh), the tray ASCII (read by trimesh).
    with sample(name).open("rb") as file:
        reference = trimesh.load_mesh(file, file_type="stl", process=False)
    mesh = load(sample(name), "stl")
    assert np.array_equal(mesh.vertices, reference.vertices)
    assert np.array_equal(mesh.faces, reference.faces)
    assert mesh.vertices.dtype == np.float64


def trimesh_glb(mesh: trimesh.Trimesh) -> bytes:
    """How the GLB was written before: trimesh's exporter, with its vertex normals."""
    web = trimesh.Trimesh(np.asarray(mesh.vertices, dtype=np.float32), mesh.faces, process=False)
    _ = web.vertex_normals
    data = web.export(file_type="glb", include_normals=True)
    assert isinstance(data, bytes)
    return data


@pytest.mark.parametrize("name", ["angle_block.STL", "fandisk.obj", "octagonal_pocket.ply"])
def test_the_glb_holds_what_trimesh_wrote(name: str) -> None:
    mesh = merge_vertices(load(sample(name), name.rsplit(".", 1)[1].lower()))
    reference = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)

    ours = trimesh.load_scene(io.BytesIO(export_glb(mesh)), file_type="glb", process=False)
    theirs = trimesh.load_scene(io.BytesIO(trimesh_glb(reference)), file_type="glb")

    [got] = ours.geometry.values()
    [expected] = theirs.geometry.values()
    assert isinstance(got, trimesh.Trimesh)
    assert isinstance(expected, trimesh.Trimesh)
    assert np.array_equal(got.vertices, expected.vertices)
    assert np.array_equal(got.faces, expected.faces)
    assert np.allclose(got.vertex_normals, expected.vertex_normals, atol=1e-6)
