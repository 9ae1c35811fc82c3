"""The backend self-test: a small scene rendered off-screen must come back not blank."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trimesh

from render_farm.pipeline.render import image_variance, render_views, window_class

PROBE_SIZE = (160, 120)
MIN_VARIANCE = 10.0


def probe_render(out_dir: Path) -> dict[str, Any]:
    """Render an icosphere; report the window class VTK used and the image's variance."""
    mesh = trimesh.creation.icosphere(subdivisions=2)
    [image] = render_views(mesh, out_dir=out_dir, views=("iso",), size=PROBE_SIZE)
    variance = image_variance(image.path)
    return {"window": window_class(), "variance": variance, "ok": variance >= MIN_VARIANCE}
