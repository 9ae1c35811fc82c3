"""The whole pipeline for one file: load, analyse, render, simplify, export; outputs on disk.
The facts and the web GLB are made while the views render (`GeometryWork`).

`run_pipeline` reports progress as (stage, percent) through a callback; the percentages are the
job's overall ones (downloading before and uploading after happen outside, in the worker).
"""

from __future__ import annotations

from render_farm.pipeline.analyse import merge_vertices
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
from render_farm.pipeline.geometry import GeometryWork
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
    mesh = merge_vertices(model.mesh)  # the welded mesh serves the views and the GLB too
    glb_path = request.out_dir / "model.glb"
    # Facts and the web GLB are made beside the views (forked for a big mesh).
    geometry = GeometryWork(
        mesh,
        declared_units=model.declared_units,
        glb_path=glb_path,
        web_max_faces=limits.web_max_faces,
    )
    lap("analyse")
    try:
        report("rendering", STAGE_START["rendering"])
        span = STAGE_START["simplifying"] - STAGE_START["rendering"]

        def view_done(done: int) -> None:
            report("rendering", STAGE_START["rendering"] + span * done // (len(VIEWS) + 1))

        views = render_views(
            mesh, out_dir=request.out_dir, views=VIEWS, size=limits.view_size, on_view=view_done
        )
        thumbnails = make_thumbnails(views[0], out_dir=request.out_dir)
        lap("render")
        report("simplifying", STAGE_START["simplifying"])
        made = geometry.result()
        lap("glb")
    finally:
        geometry.close()
    timings["geometry_work"] = made.seconds
    outputs = [OutputFile(v.name, v.path, CONTENT_TYPES["png"]) for v in [*views, *thumbnails]]
    outputs.append(OutputFile(GLB_NAME, glb_path, CONTENT_TYPES["glb"]))
    metadata = made.facts.to_dict() | {
        "web_glb_triangles": made.web_triangles,
        "view_size": list(limits.view_size),
    }
    return PipelineResult(metadata=metadata, outputs=outputs, timings=timings)
