"""Choosing the OpenGL backend: a probe render in a child process per candidate.

A backend that cannot work crashes VTK instead of raising, so each candidate renders a small
scene in its own child; the first whose picture is not blank wins. `auto` tries EGL (GPU or
Mesa) then OSMesa, `on` insists on EGL, `off` uses OSMesa only.
"""

from __future__ import annotations

import shutil
import tempfile
from enum import StrEnum
from pathlib import Path

from core.logs import get_logger
from render_farm.pipeline.errors import PipelineError
from render_farm.sandbox import run_child

log = get_logger(__name__)

PROBE_TIMEOUT = 60.0


class GpuMode(StrEnum):
    AUTO = "auto"
    ON = "on"
    OFF = "off"


CANDIDATES = {
    GpuMode.AUTO: ("egl", "osmesa"),
    GpuMode.ON: ("egl",),
    GpuMode.OFF: ("osmesa",),
}


class RendererUnavailableError(Exception):
    """No OpenGL backend rendered the probe scene: this worker must not take jobs."""


async def probe_backend(backend: str, *, egl_device: int) -> bool:
    work_dir = Path(tempfile.mkdtemp(prefix="render-probe-"))
    try:
        result = await run_child(
            {"backend": backend, "egl_device": egl_device, "probe": True, "out_dir": str(work_dir)},
            timeout=PROBE_TIMEOUT,
            work_dir=work_dir,
        )
    except PipelineError as exc:
        log.warning("render.probe_failed", backend=backend, code=exc.code.value, reason=exc.message)
        return False
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    ok = bool(result.get("ok"))
    log.info(
        "render.probe",
        backend=backend,
        window=result.get("window"),
        ok=ok,
        variance=result.get("variance"),
    )
    return ok


# The probe's answer depends on the machine only: one probe per process and (mode, device).
_selected: dict[tuple[GpuMode, int], str] = {}


async def select_backend(mode: GpuMode, *, egl_device: int) -> str:
    """The first backend of `mode` that renders; raise `RendererUnavailableError` if none."""
    known = _selected.get((mode, egl_device))
    if known is not None:
        return known
    for backend in CANDIDATES[mode]:
        if await probe_backend(backend, egl_device=egl_device):
            _selected[(mode, egl_device)] = backend
            return backend
    raise RendererUnavailableError(
        f"no OpenGL backend works (tried {', '.join(CANDIDATES[mode])}): install EGL "
        "(libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1) or OSMesa (libosmesa6)"
    )
