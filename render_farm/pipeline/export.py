"""The web GLB: the model decimated to a face budget (quadric), with normals, for the viewer."""

from __future__ import annotations

import numpy as np
import trimesh

from render_farm.pipeline.contract import WEB_MAX_FACES


def simplify(mesh: trimesh.Trimesh, *, max_faces: int = WEB_MAX_FACES) -> trimesh.Trimesh:
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
    simplified = trimesh.Trimesh(points, new_faces, process=False)
    if len(simplified.faces) > max_faces:  # rare overshoot: drop the smallest faces
        keep = np.argsort(simplified.area_faces)[-max_faces:]
        simplified = trimesh.Trimesh(points, new_faces[np.sort(keep)], process=False)
    return simplified


def export_glb(mesh: trimesh.Trimesh) -> bytes:
    """Binary glTF with vertex normals (smooth where the surface is, split at sharp edges
    by the vertex merge the analysis did)."""
    web = trimesh.Trimesh(
        vertices=np.asarray(mesh.vertices, dtype=np.float32),
        faces=mesh.faces,
        process=False,
    )
    _ = web.vertex_normals  # computed now so the exporter writes them
    data = web.export(file_type="glb", include_normals=True)
    assert isinstance(data, bytes)
    return data
