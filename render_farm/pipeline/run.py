"""The whole pipeline for one file: load, analyse, render, simplify, export; outputs on disk.

`run_pipeline` reports progress as (stage, percent) through a callback; the percentages are the
job's overall ones (downloading before and uploading after happen outside, in the worker).
"""

from __future__ import annotations

from render_farm.pipeline.analyse import analyse
from render_farm.pipeline.contract import (
    CONTENT_TYPES,
    GLB_NAME,
    STAGE_START,
    OutputFile,
    PipelineLimits,
    PipelineRequest,
    PipelineResult,
    ProgressCallback,
)
from render_farm.pipeline.export import export_glb, simplify
from render_farm.pipeline.load import load_model
from render_farm.pipeline.render import VIEWS, make_thumbnails, render_views

__all__ = [
    "CONTENT_TYPES",
    "GLB_NAME",
    "STAGE_START",
    "OutputFile",
    "PipelineLimits",
    "PipelineRequest",
    "PipelineResult",
    "ProgressCallback",
    "run_pipeline",
]


def run_pipeline(request: PipelineRequest, report: ProgressCallback) -> PipelineResult:
    import time

    limits = request.limits
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 4)
        clock = now

    report("loading", STAGE_START["loading"])
    model = load_model(
        request.source,
        kind=request.kind,
        max_triangles=limits.max_triangles,
        brep_face_budget=limits.brep_face_budget,
    )
    lap("load")
    report("analysing", STAGE_START["analysing"])
    facts = analyse(model.mesh, declared_units=model.declared_units)
    lap("analyse")
    report("rendering", STAGE_START["rendering"])
    span = STAGE_START["simplifying"] - STAGE_START["rendering"]

    def view_done(done: int) -> None:
        report("rendering", STAGE_START["rendering"] + span * done // (len(VIEWS) + 1))

    views = render_views(
        model.mesh, out_dir=request.out_dir, views=VIEWS, size=limits.view_size, on_view=view_done
    )
    thumbnails = make_thumbnails(views[0], out_dir=request.out_dir)
    lap("render")
    report("simplifying", STAGE_START["simplifying"])
    web = simplify(model.mesh, max_faces=limits.web_max_faces)
    glb_path = request.out_dir / "model.glb"
    glb_path.write_bytes(export_glb(web))
    lap("glb")
    outputs = [OutputFile(v.name, v.path, CONTENT_TYPES["png"]) for v in [*views, *thumbnails]]
    outputs.append(OutputFile(GLB_NAME, glb_path, CONTENT_TYPES["glb"]))
    metadata = facts.to_dict() | {
        "web_glb_triangles": len(web.faces),
        "view_size": list(limits.view_size),
    }
    return PipelineResult(metadata=metadata, outputs=outputs, timings=timings)
