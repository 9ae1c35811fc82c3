"""What crosses the process boundary of a render: the request, its limits, the result, and the
stage percentages. Light on purpose (no numpy, trimesh or VTK): the hub process imports it to
talk to render children without loading the geometry stack."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WEB_MAX_FACES = 100_000
VIEW_SIZE = (1024, 768)

ProgressCallback = Callable[[str, int], None]

# Stage: percent at its start (the job's overall scale, 0 to 100).
STAGE_START = {
    "downloading": 0,
    "loading": 10,
    "analysing": 30,
    "rendering": 40,
    "simplifying": 75,
    "uploading": 90,
}
GLB_NAME = "model_glb"
CONTENT_TYPES = {"png": "image/png", "glb": "model/gltf-binary"}


@dataclass(frozen=True)
class PipelineLimits:
    max_triangles: int = 5_000_000
    brep_face_budget: int = 500_000
    web_max_faces: int = WEB_MAX_FACES
    view_size: tuple[int, int] = VIEW_SIZE


@dataclass(frozen=True)
class PipelineRequest:
    source: Path
    kind: str
    out_dir: Path
    limits: PipelineLimits = field(default_factory=PipelineLimits)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "kind": self.kind,
            "out_dir": str(self.out_dir),
            "limits": {
                "max_triangles": self.limits.max_triangles,
                "brep_face_budget": self.limits.brep_face_budget,
                "web_max_faces": self.limits.web_max_faces,
                "view_size": list(self.limits.view_size),
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineRequest:
        limits = data["limits"]
        return cls(
            source=Path(data["source"]),
            kind=str(data["kind"]),
            out_dir=Path(data["out_dir"]),
            limits=PipelineLimits(
                max_triangles=int(limits["max_triangles"]),
                brep_face_budget=int(limits["brep_face_budget"]),
                web_max_faces=int(limits["web_max_faces"]),
                view_size=(int(limits["view_size"][0]), int(limits["view_size"][1])),
            ),
        )


@dataclass(frozen=True)
class OutputFile:
    name: str  # view_iso, thumb_200, model_glb
    path: Path
    content_type: str


@dataclass(frozen=True)
class PipelineResult:
    metadata: dict[str, Any]
    outputs: list[OutputFile]
    timings: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "metadata": self.metadata,
            "outputs": [
                {"name": o.name, "path": str(o.path), "content_type": o.content_type}
                for o in self.outputs
            ],
            "timings": self.timings,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineResult:
        return cls(
            metadata=dict(data["metadata"]),
            outputs=[
                OutputFile(str(o["name"]), Path(o["path"]), str(o["content_type"]))
                for o in data["outputs"]
            ],
            timings={str(k): float(v) for k, v in data["timings"].items()},
        )
