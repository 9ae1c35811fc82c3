"""Which file kinds the render farm turns into previews (no geometry libraries imported)."""

from __future__ import annotations

MESH_KINDS = frozenset({"stl", "obj", "ply", "off", "glb", "gltf", "3mf"})
BREP_KINDS = frozenset({"step", "iges"})
RENDERABLE_KINDS = MESH_KINDS | BREP_KINDS
KIND_ALIASES = {"stp": "step", "igs": "iges"}


def normalize_kind(kind: str) -> str:
    kind = kind.lower().lstrip(".")
    return KIND_ALIASES.get(kind, kind)


def is_renderable(kind: str) -> bool:
    return normalize_kind(kind) in RENDERABLE_KINDS
