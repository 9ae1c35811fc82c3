"""The triangle mesh the pipeline passes between its stages: two arrays, no library behind
them, so a binary STL goes from file to views without importing trimesh (or scipy) in the
render process. trimesh's `Trimesh` has the same two attributes and is accepted wherever a
`MeshLike` is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray


class MeshLike(Protocol):
    @property
    def vertices(self) -> NDArray[np.float64]: ...  # (n, 3)

    @property
    def faces(self) -> NDArray[np.int64]: ...  # (m, 3) indices into vertices


@dataclass(frozen=True, eq=False)
class TriangleMesh:
    vertices: NDArray[np.float64]
    faces: NDArray[np.int64]

    @classmethod
    def of(cls, mesh: MeshLike) -> TriangleMesh:
        return cls(
            np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)
        )
