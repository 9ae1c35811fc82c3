"""Preview images: PNG views rendered off-screen with pyvista on VTK's EGL or OSMesa window.

The OpenGL window class is chosen by environment before the first `Plotter` exists
(`use_backend`): EGL runs on the NVIDIA driver on a GPU machine and on Mesa's llvmpipe on the
CPU; OSMesa is the fallback. A backend that does not work makes VTK crash rather than raise,
which is why renders happen in a child process and a worker probes its backend at start.
VTK is handed arrays (`pv.PolyData`), never a file path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from PIL import Image

from render_farm.pipeline.contract import VIEW_SIZE

WINDOW_CLASSES = {"egl": "vtkEGLRenderWindow", "osmesa": "vtkOSOpenGLRenderWindow"}
VIEWS = ("iso", "front", "top", "right")
THUMBNAIL_WIDTHS = (100, 200, 400)
SPLIT_EDGES_MAX_FACES = 300_000

MODEL_COLOR = "#9aa7b8"
EDGE_COLOR = "#2b3440"
BACKGROUND_BOTTOM = "#dfe3e8"
BACKGROUND_TOP = "#ffffff"


@dataclass(frozen=True)
class RenderedImage:
    name: str  # view_iso, thumb_200, ...
    path: Path
    width: int
    height: int


def use_backend(backend: str, *, egl_device: int) -> None:
    """Pick VTK's off-screen window class; call before the first render of the process."""
    os.environ["VTK_DEFAULT_OPENGL_WINDOW"] = WINDOW_CLASSES[backend]
    os.environ["VTK_DEFAULT_EGL_DEVICE_INDEX"] = str(egl_device)


def to_polydata(mesh: trimesh.Trimesh) -> object:
    import pyvista as pv

    faces = np.empty((len(mesh.faces), 4), dtype=np.int64)
    faces[:, 0] = 3
    faces[:, 1:] = mesh.faces
    return pv.PolyData(np.asarray(mesh.vertices, dtype=np.float64), faces.ravel())


def render_views(
    mesh: trimesh.Trimesh,
    *,
    out_dir: Path,
    views: Sequence[str] = VIEWS,
    size: tuple[int, int] = VIEW_SIZE,
    on_view: Callable[[int], None] | None = None,
) -> list[RenderedImage]:
    """One PNG per view (`view_<name>.png`), rendered in one window; the camera moves
    without re-rendering until the screenshot."""
    import pyvista as pv

    poly = to_polydata(mesh)
    plotter: Any = pv.Plotter(off_screen=True, window_size=list(size), lighting="light kit")
    try:
        plotter.set_background(BACKGROUND_BOTTOM, top=BACKGROUND_TOP)
        plotter.add_mesh(
            poly,
            color=MODEL_COLOR,
            smooth_shading=True,
            # Crisp CAD edges; above the threshold the split costs seconds and facets are tiny.
            split_sharp_edges=len(mesh.faces) <= SPLIT_EDGES_MAX_FACES,
            feature_angle=30.0,
            specular=0.25,
            specular_power=20.0,
            ambient=0.15,
            diffuse=0.85,
        )
        plotter.enable_anti_aliasing("msaa")
        images = []
        for index, view in enumerate(views):
            _place_camera(plotter, view)
            path = out_dir / f"view_{view}.png"
            plotter.screenshot(str(path))  # the window is already this size
            images.append(RenderedImage(f"view_{view}", path, size[0], size[1]))
            if on_view is not None:
                on_view(index + 1)
        return images
    finally:
        plotter.close()


def _place_camera(plotter: Any, view: str) -> None:
    if view == "iso":
        plotter.disable_parallel_projection()
        plotter.view_isometric(render=False)
    else:
        plotter.enable_parallel_projection()
        if view == "front":
            plotter.view_xz(render=False)
        elif view == "top":
            plotter.view_xy(render=False)
        elif view == "right":
            plotter.view_yz(render=False)
        else:
            raise ValueError(f"unknown view {view!r}")
    plotter.reset_camera(render=False)
    plotter.camera.zoom(1.2 if view == "iso" else 1.1)


def make_thumbnails(
    source: RenderedImage, *, out_dir: Path, widths: Sequence[int] = THUMBNAIL_WIDTHS
) -> list[RenderedImage]:
    """Smaller copies of a view (`thumb_<width>.png`), resampled with Lanczos."""
    thumbnails = []
    with Image.open(source.path) as image:
        image.load()
        for width in widths:
            height = max(1, round(source.height * width / source.width))
            path = out_dir / f"thumb_{width}.png"
            image.resize((width, height), Image.Resampling.LANCZOS).save(path, optimize=True)
            thumbnails.append(RenderedImage(f"thumb_{width}", path, width, height))
    return thumbnails


def image_variance(path: Path) -> float:
    """Pixel variance of a PNG: zero for a blank (one-colour) image."""
    with Image.open(path) as image:
        return float(np.asarray(image.convert("L"), dtype=np.float64).var())
