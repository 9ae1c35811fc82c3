"""Loading: every supported format into one `TriangleMesh`, with no VTK reader involved.

Untrusted bytes are parsed by trimesh (meshes) or OpenCASCADE through cascadio (STEP, IGES);
VTK only ever sees the resulting arrays. trimesh's default processing costs about ten times the
bare parse on big meshes, so files are loaded with `process=False` and only the vertex merge
the analysis needs is done (in `analyse`). trimesh returns an EMPTY mesh for garbage STL and OBJ
without raising: emptiness is checked here. A binary STL (the size its header states) is read
straight into arrays as trimesh reads it, without importing trimesh at all.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from render_farm.pipeline.errors import FailureCode, PipelineError
from render_farm.pipeline.kinds import (
    BREP_KINDS,
    KIND_ALIASES,
    MESH_KINDS,
    RENDERABLE_KINDS,
    is_renderable,
    normalize_kind,
)
from render_farm.pipeline.mesh import TriangleMesh

if TYPE_CHECKING:
    import trimesh

__all__ = [
    "BREP_KINDS",
    "KIND_ALIASES",
    "MESH_KINDS",
    "RENDERABLE_KINDS",
    "LoadedModel",
    "is_renderable",
    "load_model",
    "normalize_kind",
]


# STEP/IGES tessellation: a first coarse pass measures the part, the second meshes it with a
# chord tolerance relative to its size; a result over the face budget is meshed coarser.
BREP_COARSE_TOLERANCE = 0.05  # relative to each edge (OCC's relative deflection)
BREP_RELATIVE_TOLERANCE = 0.004  # of the bounding box diagonal
BREP_ANGULAR_TOLERANCE = 0.5  # radians
BREP_MAX_PASSES = 3


@dataclass(frozen=True)
class LoadedModel:
    mesh: TriangleMesh
    declared_units: str | None  # the units the file states (3MF, glTF, STEP), if any


def load_model(path: Path, *, kind: str, max_triangles: int, brep_face_budget: int) -> LoadedModel:
    """Parse `path` as `kind`; raise `PipelineError` (unsupported_format, corrupt_file,
    too_large) for anything that does not give a non-empty triangle mesh."""
    kind = normalize_kind(kind)
    if kind not in RENDERABLE_KINDS:
        raise PipelineError(
            FailureCode.UNSUPPORTED_FORMAT, f"{kind or 'this'} files are not rendered"
        )
    mesh: TriangleMesh | None = None
    units: str | None = None
    if kind == "stl":
        _check_binary_stl_count(path, max_triangles=max_triangles)
        mesh = _read_binary_stl(path)
    if mesh is None:
        loaded = (
            _load_brep(path, kind=kind, face_budget=brep_face_budget)
            if kind in BREP_KINDS
            else _load_mesh_file(path, kind=kind)
        )
        mesh, units = _single_mesh(loaded)
    _check_geometry(mesh, max_triangles=max_triangles)
    if kind == "step":
        units = "m"  # OpenCASCADE's glTF writer converts STEP to metres
    return LoadedModel(mesh=mesh, declared_units=units)


def _check_binary_stl_count(path: Path, *, max_triangles: int) -> None:
    """A binary STL states its triangle count: refuse a huge one before parsing it."""
    size = path.stat().st_size
    if size < 84:
        return
    with path.open("rb") as file:
        file.seek(80)
        (count,) = struct.unpack("<I", file.read(4))
    if size == 84 + 50 * count and count > max_triangles:
        raise PipelineError(
            FailureCode.TOO_LARGE, f"{count} triangles, over the limit of {max_triangles}"
        )


_STL_RECORD = np.dtype([("normals", "<f4", 3), ("vertices", "<f4", (3, 3)), ("attributes", "<u2")])


def _read_binary_stl(path: Path) -> TriangleMesh | None:
    """The triangles of a binary STL whose size is the one its count states (trimesh's test
    for binary), as trimesh reads them (three float32 vertices per triangle, as float64);
    None for anything else (ASCII, a wrong size, no triangles), which goes to trimesh."""
    size = path.stat().st_size
    if size < 84:
        return None
    with path.open("rb") as file:
        file.seek(80)
        (count,) = struct.unpack("<I", file.read(4))
        if count == 0 or size != 84 + _STL_RECORD.itemsize * count:
            return None
        records = np.fromfile(file, dtype=_STL_RECORD, count=count)
    if len(records) != count:
        return None
    vertices = records["vertices"].reshape(-1, 3).astype(np.float64)
    return TriangleMesh(vertices, np.arange(3 * count, dtype=np.int64).reshape(-1, 3))


def _load_mesh_file(path: Path, *, kind: str) -> trimesh.Trimesh | trimesh.Scene:
    import trimesh

    try:
        with path.open("rb") as file:
            loaded = trimesh.load(file, file_type=kind, process=False)
    except MemoryError:
        raise PipelineError(FailureCode.TOO_LARGE, "the model does not fit in memory") from None
    except Exception as exc:  # noqa: BLE001 - parsers of hostile input raise anything at all
        raise PipelineError(FailureCode.CORRUPT_FILE, f"unreadable {kind} file ({exc})") from None
    if not isinstance(loaded, trimesh.Trimesh | trimesh.Scene):
        raise PipelineError(FailureCode.CORRUPT_FILE, f"the {kind} file holds no surface")
    return loaded


def _load_brep(path: Path, *, kind: str, face_budget: int) -> trimesh.Scene:
    import cascadio  # OpenCASCADE: imported only where it is used
    import trimesh

    data = path.read_bytes()

    def tessellate(*, tolerance: float, relative: bool) -> trimesh.Scene:
        glb = cascadio.load(
            data,
            file_type="step" if kind == "step" else "iges",
            tol_linear=tolerance,
            tol_angular=BREP_ANGULAR_TOLERANCE,
            tol_relative=relative,
            use_parallel=False,
        )
        if not glb:
            raise PipelineError(
                FailureCode.CORRUPT_FILE, f"OpenCASCADE could not read this {kind} file"
            )
        try:
            scene = trimesh.load(io.BytesIO(glb), file_type="glb", process=False)
        except (ValueError, IndexError, KeyError) as exc:
            raise PipelineError(
                FailureCode.CORRUPT_FILE, f"unusable tessellation ({exc})"
            ) from None
        if isinstance(scene, trimesh.Scene):
            return scene
        return trimesh.Scene(scene)

    coarse = tessellate(tolerance=BREP_COARSE_TOLERANCE, relative=True)
    if coarse.is_empty:
        raise PipelineError(FailureCode.CORRUPT_FILE, f"the {kind} file holds no solid or surface")
    diagonal = float(np.linalg.norm(coarse.extents))
    tolerance = max(diagonal * BREP_RELATIVE_TOLERANCE, 1e-6)
    scene = coarse
    for _ in range(BREP_MAX_PASSES):
        candidate = tessellate(tolerance=tolerance, relative=False)
        faces = sum(len(g.faces) for g in candidate.geometry.values() if hasattr(g, "faces"))
        if faces <= face_budget:
            return candidate
        tolerance *= 4
    return scene  # even the finer passes were over budget: the coarse one is good enough


def _single_mesh(loaded: trimesh.Trimesh | trimesh.Scene) -> tuple[TriangleMesh, str | None]:
    import trimesh

    units = loaded.units if isinstance(loaded.units, str) and loaded.units else None
    if isinstance(loaded, trimesh.Trimesh):
        return TriangleMesh.of(loaded), units
    meshes = [g for g in loaded.geometry.values() if isinstance(g, trimesh.Trimesh)]
    if not meshes or all(len(m.faces) == 0 for m in meshes):
        raise PipelineError(FailureCode.CORRUPT_FILE, "the file holds no triangles")
    try:
        mesh = loaded.to_mesh()  # every instance, with its transform applied
    except (ValueError, IndexError) as exc:
        raise PipelineError(
            FailureCode.CORRUPT_FILE, f"the scene could not be flattened ({exc})"
        ) from None
    return TriangleMesh.of(mesh), units


def _check_geometry(mesh: TriangleMesh, *, max_triangles: int) -> None:
    faces = len(mesh.faces)
    if faces == 0 or len(mesh.vertices) == 0:
        raise PipelineError(FailureCode.CORRUPT_FILE, "the file holds no triangles")
    if faces > max_triangles:
        raise PipelineError(
            FailureCode.TOO_LARGE, f"{faces} triangles, over the limit of {max_triangles}"
        )
    if not np.isfinite(mesh.vertices).all():
        raise PipelineError(FailureCode.CORRUPT_FILE, "the file has non-finite coordinates")
    if mesh.faces.min() < 0 or mesh.faces.max() >= len(mesh.vertices):
        raise PipelineError(FailureCode.CORRUPT_FILE, "faces point at missing vertices")
