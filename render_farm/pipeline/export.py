"""The web GLB: the model decimated to a face budget (quadric), with normals, for the viewer.

Written with numpy alone (one mesh, one node; indices, positions and normals), in the layout
trimesh's exporter gave it, with trimesh's vertex normals (face normals weighted by the
corner angles): trimesh's import alone cost the GLB's process more than all of its work.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
from numpy.typing import NDArray

from render_farm.pipeline.contract import WEB_MAX_FACES
from render_farm.pipeline.mesh import MeshLike, TriangleMesh

GLB_MAGIC = b"glTF"
GLB_VERSION = 2
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
UNSIGNED_INT = 5125
FLOAT = 5126
TRIANGLES = 4
ZERO_LENGTH = 1e-12  # trimesh's tol.zero: shorter vectors have no direction


def simplify(mesh: MeshLike, *, max_faces: int = WEB_MAX_FACES) -> MeshLike:
    """The mesh itself if small enough, else a quadric decimation to at most `max_faces`."""
    faces = len(mesh.faces)
    if faces <= max_faces:
        return mesh
    import fast_simplification

    reduction = 1.0 - (max_faces * 0.98) / faces  # its result lands near the target, not on it
    points, new_faces = fast_simplification.simplify(
        np.asarray(mesh.vertices, dtype=np.float32),
        np.asarray(mesh.faces, dtype=np.int32),
        target_reduction=reduction,
    )
    vertices = np.asarray(points, dtype=np.float64)
    kept = np.asarray(new_faces, dtype=np.int64)
    if len(kept) > max_faces:  # rare overshoot: drop the smallest faces
        corners = vertices[kept]
        crosses = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 1])
        keep = np.argsort(np.sqrt((crosses**2).sum(axis=1)))[-max_faces:]
        kept = kept[np.sort(keep)]
    return TriangleMesh(vertices, kept)


def _unit(vectors: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    length = np.sqrt((vectors**2).sum(axis=1))
    valid = length > ZERO_LENGTH
    unit = np.zeros_like(vectors)
    unit[valid] = vectors[valid] / length[valid, None]
    return unit, valid


def vertex_normals(vertices: NDArray[np.float64], faces: NDArray[np.int64]) -> NDArray[np.float64]:
    """trimesh's `vertex_normals`: each vertex's faces' unit normals weighted by the face's
    angle at that vertex, summed and made unit (zero for a vertex with no proper face)."""
    corners = vertices[faces]
    face_normals, _ = _unit(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 1]))
    u, _ = _unit(corners[:, 1] - corners[:, 0])
    v, _ = _unit(corners[:, 2] - corners[:, 0])
    w, _ = _unit(corners[:, 2] - corners[:, 1])
    angles = np.zeros((len(faces), 3))
    angles[:, 0] = np.arccos(np.clip((u * v).sum(axis=1), -1, 1))
    angles[:, 1] = np.arccos(np.clip((-u * w).sum(axis=1), -1, 1))
    angles[:, 2] = np.pi - angles[:, 0] - angles[:, 1]
    angles[(angles < 1e-8).any(axis=1), :] = 0.0  # a degenerate face counts for nothing
    proper = (face_normals**2).sum(axis=1) > 0.5
    summed = np.zeros((len(vertices), 3))
    for corner in range(3):
        weights = angles[proper, corner]
        for axis in range(3):
            summed[:, axis] += np.bincount(
                faces[proper, corner],
                weights=weights * face_normals[proper, axis],
                minlength=len(vertices),
            )
    normals, _ = _unit(summed)
    return normals


def _accessor(view: int, component: int, kind: str, values: NDArray[Any]) -> dict[str, Any]:
    accessor: dict[str, Any] = {
        "componentType": component,
        "type": kind,
        "bufferView": view,
        "count": len(values),
    }
    if len(values):
        accessor["max"] = values.max(axis=0).tolist()
        accessor["min"] = values.min(axis=0).tolist()
    return accessor


def export_glb(mesh: MeshLike) -> bytes:
    """Binary glTF with vertex normals (smooth where the surface is, split at sharp edges
    by the vertex merge the analysis did)."""
    positions = np.ascontiguousarray(mesh.vertices, dtype=np.float32)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    normals = vertex_normals(positions.astype(np.float64), faces).astype(np.float32)
    indices = faces.astype(np.uint32).ravel()
    blobs = [indices.tobytes(), positions.tobytes(), np.ascontiguousarray(normals).tobytes()]
    views = []
    offset = 0
    for blob in blobs:
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(blob)})
        offset += len(blob) + (-len(blob) % 4)

    document = {
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "asset": {"version": "2.0", "generator": "IdEinstein render farm"},
        "accessors": [
            _accessor(0, UNSIGNED_INT, "SCALAR", indices.reshape(-1, 1)),
            _accessor(1, FLOAT, "VEC3", positions),
            _accessor(2, FLOAT, "VEC3", normals),
        ],
        "meshes": [
            {
                "name": "geometry_0",
                "primitives": [
                    {"attributes": {"POSITION": 1, "NORMAL": 2}, "indices": 0, "mode": TRIANGLES}
                ],
            }
        ],
        "nodes": [{"name": "geometry_0", "mesh": 0}],
        "buffers": [{"byteLength": offset}],
        "bufferViews": views,
    }
    text = json.dumps(document, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    binary = b"".join(blob + b"\0" * (-len(blob) % 4) for blob in blobs)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return b"".join(
        [
            struct.pack("<4sII", GLB_MAGIC, GLB_VERSION, total),
            struct.pack("<II", len(text), CHUNK_JSON),
            text,
            struct.pack("<II", len(binary), CHUNK_BIN),
            binary,
        ]
    )
