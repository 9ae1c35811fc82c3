"""Geometry facts for the file's details: size, triangles, volume, area, watertightness.

Files repeat a vertex for every triangle that uses it (a binary STL stores three per triangle),
so the mesh is first welded (`merge_vertices`): the same rule as trimesh's `merge_vertices`
(positions rounded to 8 decimals, UVs and normals ignored), done with one sort of a 64-bit key
per vertex instead of trimesh's row sorting and cache updates. The facts are then measured on
the welded arrays with plain numpy (trimesh's formulas, without its caches); the welded mesh is
what the views and the web GLB are made from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from render_farm.pipeline.mesh import MeshLike, TriangleMesh

# Below these largest extents a unitless model is more likely in metres, then inches; above,
# millimetres (the CAD exporters' default). A guess, and labelled as one.
METRES_BELOW = 0.5
INCHES_BELOW = 10.0
# Vertices closer than this rounding (trimesh's `tol.merge`, 1e-8) are the same vertex.
MERGE_DIGITS = 8

_HASH_MULTIPLIERS = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9], dtype=np.uint64
)


@dataclass(frozen=True)
class GeometryFacts:
    triangles: int
    vertices: int
    bbox_min: list[float]
    bbox_max: list[float]
    size: list[float]
    watertight: bool
    volume: float | None  # only for a watertight mesh
    area: float
    components: int
    units: str
    units_source: str  # "file" (declared) or "guess"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def guess_units(size: NDArray[np.float64]) -> str:
    largest = float(np.max(size))
    if largest < METRES_BELOW:
        return "m"
    if largest < INCHES_BELOW:
        return "in"
    return "mm"


def merge_vertices(mesh: MeshLike) -> TriangleMesh:
    """A new mesh with coincident vertices welded and unreferenced ones dropped; vertices
    keep the order of their first use, as trimesh's `merge_vertices` leaves them."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    referenced = np.zeros(len(vertices), dtype=bool)
    referenced[faces] = True
    used = np.flatnonzero(referenced)
    # trimesh's rounding of the positions, kept to the letter so the same vertices merge.
    scaled = (vertices if len(used) == len(vertices) else vertices[used]) * 10**MERGE_DIGITS
    np.rint(scaled, out=scaled)
    if len(scaled) and float(np.abs(scaled).max()) < 2.0**62:
        # Whole numbers this small are equal as floats exactly when equal as integers: use
        # their bits as they are, once -0.0 is made 0.0 (trimesh's int64 has no -0).
        scaled += 0.0
        keys = scaled.view(np.int64)
    else:
        keys = scaled.astype(np.int64)  # as trimesh converts (overflow included)
    first, inverse = unique_rows(keys)
    remap = np.zeros(len(vertices), dtype=np.int64)
    remap[used] = inverse
    return TriangleMesh(vertices[used[first]], remap[faces])


def unique_rows(rows: NDArray[np.int64]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """For (n, 3) integers: the index of each distinct row's first occurrence, in order, and
    every row's number among the distinct rows. One sort of a 64-bit hash of the rows, checked
    against the rows themselves (a collision, never seen in practice, falls back to numpy's
    row-wise unique). Two scratch arrays are reused throughout: fresh big arrays cost page
    faults that take longer than the arithmetic."""
    count = len(rows)
    if count == 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    bits = rows.view(np.uint64)
    hashed = np.empty(count, dtype=np.uint64)
    scratch = np.empty(count, dtype=np.uint64)
    for column, multiplier in enumerate(_HASH_MULTIPLIERS):
        # Fold the high half down first: float bits of whole numbers end in many zeros.
        target = hashed if column == 0 else scratch
        np.right_shift(bits[:, column], np.uint64(32), out=target)
        target ^= bits[:, column]
        target *= multiplier
        if column:
            hashed += scratch
    hashed ^= hashed >> np.uint64(29)
    hashed *= _HASH_MULTIPLIERS[0]
    hashed ^= hashed >> np.uint64(32)
    order = np.argsort(hashed)
    ordered = np.take(hashed, order, out=scratch)
    starts_group = np.empty(count, dtype=bool)
    starts_group[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts_group[1:])
    group_first = np.minimum.reduceat(order, np.flatnonzero(starts_group))
    group_of_sorted = np.cumsum(starts_group, out=hashed.view(np.intp))
    group = scratch.view(np.intp)
    group[order] = group_of_sorted
    group -= 1
    # Number the groups in the order of their first rows.
    is_first = starts_group
    is_first[:] = False
    is_first[group_first] = True
    number = np.cumsum(is_first, out=hashed.view(np.intp))
    number -= 1
    inverse = number[group_first][group]
    first = np.flatnonzero(is_first)
    representative = np.take(first, inverse, out=scratch.view(np.intp))
    same = all(np.array_equal(rows[:, column], rows[representative, column]) for column in range(3))
    if not same:
        _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
        appearance = np.argsort(first)
        renumber = np.empty(len(first), dtype=np.intp)
        renumber[appearance] = np.arange(len(first))
        first, inverse = first[appearance], renumber[inverse.reshape(-1)]
    return first, inverse


def is_watertight(faces: NDArray[np.int64], *, vertex_count: int) -> bool:
    """Every edge shared by exactly two triangles (trimesh's `is_watertight`)."""
    if len(faces) == 0:
        return False
    starts = faces.T.ravel()
    ends = faces[:, [1, 2, 0]].T.ravel()
    keys = np.minimum(starts, ends) * np.int64(vertex_count) + np.maximum(starts, ends)
    keys.sort()
    if len(keys) % 2:
        return False
    pairs_match = bool(np.array_equal(keys[0::2], keys[1::2]))
    return pairs_match and bool(np.all(keys[2::2] != keys[1:-1:2]))


def count_components(faces: NDArray[np.int64], *, vertex_count: int) -> int:
    """Connected pieces: components of the vertex graph of the triangles' edges (scipy's
    csgraph takes a fraction of a second on a million faces; face adjacency takes seconds)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    used = np.zeros(vertex_count, dtype=bool)
    used[faces] = True
    rows = np.concatenate([faces[:, 0], faces[:, 1]])
    cols = np.concatenate([faces[:, 1], faces[:, 2]])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(vertex_count,) * 2)
    _, labels = connected_components(graph, directed=False)
    return int(np.count_nonzero(np.bincount(labels[used])))  # unused vertices are not pieces


def measure(mesh: MeshLike, *, declared_units: str | None) -> GeometryFacts:
    """The facts of an already welded mesh (`merge_vertices`)."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    used = np.zeros(len(vertices), dtype=bool)
    used[faces] = True
    in_mesh = vertices[used]
    bounds = np.array([in_mesh.min(axis=0), in_mesh.max(axis=0)])
    size = bounds[1] - bounds[0]
    triangles = vertices[faces]
    # trimesh's formulas: the cross product of two edges, the divergence-theorem volume.
    crosses = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 1])
    area = float(np.sqrt((crosses**2).sum(axis=1)).sum() / 2.0)
    watertight = is_watertight(faces, vertex_count=len(vertices))
    volume = None
    if watertight:
        volume = abs(float((crosses[:, 0] * triangles[:, :, 0].sum(axis=1)).sum() / 6.0))
    return GeometryFacts(
        triangles=len(faces),
        vertices=int(np.count_nonzero(used)),
        bbox_min=[round(float(v), 6) for v in bounds[0]],
        bbox_max=[round(float(v), 6) for v in bounds[1]],
        size=[round(float(v), 6) for v in size],
        watertight=watertight,
        volume=None if volume is None else round(volume, 9),
        area=round(area, 9),
        components=count_components(faces, vertex_count=len(vertices)),
        units=declared_units or guess_units(size),
        units_source="file" if declared_units else "guess",
    )


def analyse(mesh: MeshLike, *, declared_units: str | None) -> GeometryFacts:
    """Weld coincident vertices (files repeat them per triangle) and measure."""
    return measure(merge_vertices(mesh), declared_units=declared_units)
