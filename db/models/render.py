"""Render jobs: one per file version that the render farm turns into previews.

The job row is the truth about a render (status, progress, outputs, geometry facts); progress
events on the bus only wake listeners up. Outputs are blobs (PNG views, a web GLB) named by
their sha256 in `outputs`, so a preview URL is content-addressed and cacheable for ever.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from core.ids import new_id


class RenderStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RenderJob(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    file: fields.ForeignKeyRelation[Any] = fields.ForeignKeyField(
        "models.File", related_name="render_jobs", on_delete=fields.CASCADE
    )
    version: fields.ForeignKeyRelation[Any] = fields.ForeignKeyField(
        "models.FileVersion", related_name="render_jobs", on_delete=fields.CASCADE
    )
    status = fields.CharEnumField(RenderStatus, max_length=10, default=RenderStatus.QUEUED)
    progress = fields.IntField(default=0, description="Percent, 0 to 100")
    stage = fields.CharField(max_length=40, default="")
    attempts = fields.IntField(default=0)
    error_code = fields.CharField(max_length=50, default="")
    error_message = fields.CharField(max_length=500, default="")
    outputs: fields.JSONField[dict[str, Any]] = fields.JSONField(
        default=dict, description="Output name to blob key, e.g. view_iso or model_glb"
    )
    metadata: fields.JSONField[dict[str, Any]] = fields.JSONField(
        default=dict, description="Triangles, bounding box, volume, area, watertightness"
    )
    renderer = fields.CharField(max_length=20, default="", description="egl, osmesa or none")
    requested_by: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="render_jobs", null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "render_jobs"
        indexes = (("status", "created_at"), ("version_id", "created_at"))
