"""The fast analysis against trimesh's own (`merge_vertices` and its cached properties), the way
the pipeline measured before: on every real CAD sample and on generated meshes."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from render_farm.pipeline.analyse import (
    GeometryFacts,
    analyse,
    count_components,
    is_watertight,
    merge_vertices,
)
from render_farm.pipeline.load import load_model
from render_farm.pipeline.mesh import MeshLike
from tests.cad_samples import cad_sample as sample

SAMPLES = [
    ("angle_block.STL", "stl"),
    ("1002_tray_bottom.STL", "stl"),
    ("fandisk.obj", "obj"),
    ("octagonal_pocket.ply", "ply"),
    ("featuretype.3MF", "3mf"),
    ("pins.glb", "glb"),
    ("featuretype.STEP", "step"),
    ("box_sides.STEP", "step"),
    ("twoCars.igs", "iges"),
]


def reference_facts(source: MeshLike) -> tuple[trimesh.Trimesh, dict[str, object]]:
    """What `analyse` computed with trimesh before it was rewritten."""
    mesh = trimesh.Trimesh(np.array(source.vertices), np.array(source.faces), process=False)
    mesh.merge_vertices(merge_tex=True, merge_norm=True)
    watertight = bool(mesh.is_watertight)
    return mesh, {
        "triangles": len(mesh.faces),
        "vertices": len(mesh.vertices),
        "bounds": np.asarray(mesh.bounds),
        "watertight": watertight,
        "volume": abs(float(mesh.volume)) if watertight else None,
        "area": float(mesh.area),
        "components": old_count_components(mesh.faces, vertex_count=len(mesh.vertices)),
    }


def old_count_components(faces: np.ndarray, *, vertex_count: int) -> int:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows = np.concatenate([faces[:, 0], faces[:, 1]])
    cols = np.concatenate([faces[:, 1], faces[:, 2]])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(vertex_count,) * 2)
    _, labels = connected_components(graph, directed=False)
    return len(np.unique(labels[np.unique(faces)]))


def check_same(facts: GeometryFacts, reference: dict[str, object]) -> None:
    assert facts.triangles == reference["triangles"]
    assert facts.vertices == reference["vertices"]
    bounds = reference["bounds"]
    assert isinstance(bounds, np.ndarray)
    assert facts.bbox_min == pytest.approx(bounds[0], abs=1e-6)
    assert facts.bbox_max == pytest.approx(bounds[1], abs=1e-6)
    assert facts.watertight is reference["watertight"]
    if reference["volume"] is None:
        assert facts.volume is None
    else:
        assert facts.volume == pytest.approx(reference["volume"], rel=1e-9, abs=1e-9)
    assert facts.area == pytest.approx(reference["area"], rel=1e-9, abs=1e-9)
    assert facts.components == reference["components"]


@pytest.mark.parametrize(("name", "kind"), SAMPLES)
def test_the_fast_analysis_matches_trimesh_on_real_exports(name: str, kind: str) -> None:
    model = load_model(sample(name), kind=kind, max_triangles=5_000_000, brep_face_budget=500_000)
    welded, reference = reference_facts(model.mesh)

    facts = analyse(model.mesh, declared_units=None)
    merged = merge_vertices(model.mesh)

    check_same(facts, reference)
    # The same welded vertices in the same order: the views and the GLB are unchanged.
    assert np.array_equal(merged.vertices, welded.vertices)
    assert np.array_equal(merged.faces, welded.faces)


def wavy_grid_soup(grid: int) -> trimesh.Trimesh:
    """A height field stored as a binary STL stores it: three float32 vertices per triangle."""
    axis = np.linspace(-50.0, 50.0, grid, dtype=np.float32)
    x, y = np.meshgrid(axis, axis)
    z = (4 * np.sin(x / 7) * np.cos(y / 9)).astype(np.float32)
    vertices = np.stack([x, y, z], axis=-1).reshape(-1, 3)
    index = np.arange(grid * grid).reshape(grid, grid)
    a, b = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()
    c, d = index[1:, :-1].ravel(), index[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    corners = vertices[faces].reshape(-1, 3).astype(np.float64)
    return trimesh.Trimesh(corners, np.arange(len(corners)).reshape(-1, 3), process=False)


def test_the_fast_analysis_matches_trimesh_on_a_triangle_soup() -> None:
    soup = wavy_grid_soup(60)  # 6,962 triangles, 20,886 unmerged vertices
    _, reference = reference_facts(soup)

    facts = analyse(soup, declared_units=None)

    check_same(facts, reference)
    assert facts.vertices == 60 * 60
    assert facts.watertight is False  # a sheet has a border


def test_the_fast_analysis_matches_trimesh_on_closed_pieces_with_spare_vertices() -> None:
    parts = [
        trimesh.creation.icosphere(subdivisions=3),
        trimesh.creation.box(extents=(1, 2, 3)).apply_translation([5, 0, 0]),
        trimesh.creation.cylinder(radius=1, height=2).apply_translation([0, 6, 0]),
    ]
    offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
    pieces = trimesh.Trimesh(
        np.vstack([p.vertices for p in parts]),
        np.vstack([p.faces + offset for p, offset in zip(parts, offsets, strict=True)]),
        process=False,
    )
    soup = trimesh.Trimesh(
        np.vstack([pieces.vertices[pieces.faces].reshape(-1, 3), [[99.0, 99.0, 99.0]]]),
        np.arange(len(pieces.faces) * 3).reshape(-1, 3),
        process=False,
    )  # one vertex no face uses: outside the bounds, not a piece
    _, reference = reference_facts(soup)

    facts = analyse(soup, declared_units=None)

    check_same(facts, reference)
    assert facts.watertight is True
    assert facts.components == 3


def test_nearly_equal_positions_merge_as_trimesh_rounds_them() -> None:
    box = trimesh.creation.box()
    soup = box.vertices[box.faces].reshape(-1, 3)
    soup[::2] += 1e-12  # far below the 1e-8 merge tolerance
    mesh = trimesh.Trimesh(soup, np.arange(len(soup)).reshape(-1, 3), process=False)

    facts = analyse(mesh, declared_units=None)

    assert (facts.vertices, facts.watertight, facts.components) == (8, True, 1)
    assert facts.volume == pytest.approx(1.0)


def test_watertightness_needs_every_edge_exactly_twice() -> None:
    box = trimesh.creation.box()
    faces = np.asarray(box.faces)
    assert is_watertight(faces, vertex_count=8) is True
    assert is_watertight(faces[:-1], vertex_count=8) is False  # an open edge
    assert is_watertight(np.vstack([faces, faces[:1]]), vertex_count=8) is False  # a fin
    assert is_watertight(faces[:0], vertex_count=8) is False


def test_components_ignore_unused_vertices() -> None:
    faces = np.array([[0, 1, 2], [4, 5, 6]])
    assert count_components(faces, vertex_count=8) == 2


def test_minus_zero_is_zero() -> None:
    soup = np.array(
        [
            [0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [-0.0, -0.0, 0.0],  # the first vertex again
            [0.0, 1.0, 0.0],
            [1.0, 1.0, 0.0],
        ]
    )
    mesh = trimesh.Trimesh(soup, [[0, 1, 2], [3, 4, 5]], process=False)
    _, reference = reference_facts(mesh)

    facts = analyse(mesh, declared_units=None)

    check_same(facts, reference)
    assert facts.vertices == 4
    assert facts.components == 1
