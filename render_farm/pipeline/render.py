"""Preview images: PNG views rendered off-screen by VTK on its EGL or OSMesa window.

The OpenGL window class is chosen by environment before the first window exists
(`use_backend`): EGL runs on the NVIDIA driver on a GPU machine and on Mesa's llvmpipe on the
CPU; OSMesa is the fallback. A backend that does not work makes VTK crash rather than raise,
which is why renders happen in a child process and a worker probes its backend at start.
VTK is handed arrays, never a file path. The scene is the one pyvista's `Plotter` used to
build (its light kit, camera presets, 25-degree view angle), made with VTK's own classes:
pyvista's plotting import (matplotlib with it) cost the render child about a second. Edges are
smoothed by FXAA, not 4x MSAA: on llvmpipe MSAA tripled the cost of each frame of a big mesh.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from render_farm.pipeline.contract import VIEW_SIZE
from render_farm.pipeline.mesh import MeshLike

WINDOW_CLASSES = {"egl": "vtkEGLRenderWindow", "osmesa": "vtkOSOpenGLRenderWindow"}
VIEWS = ("iso", "front", "top", "right")
THUMBNAIL_WIDTHS = (100, 200, 400)
SPLIT_EDGES_MAX_FACES = 300_000
VIEW_ANGLE = 25.0  # degrees
MULTI_SAMPLES = 0  # no MSAA ...
USE_FXAA = True  # ... FXAA instead: as smooth to the eye, a third of the cost on llvmpipe
VIEW_PNG_COMPRESSION = 3

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


def to_polydata(mesh: MeshLike) -> Any:
    """A `vtkPolyData` of the triangles (VTK's arrays share the numpy memory and hold on to
    it)."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData

    support: Any = numpy_support  # untyped
    vertices = np.ascontiguousarray(mesh.vertices, dtype=np.float64)
    connectivity = np.ascontiguousarray(mesh.faces, dtype=np.int64).ravel()
    offsets = np.arange(0, len(connectivity) + 1, 3, dtype=np.int64)
    points = vtkPoints()
    points.SetData(support.numpy_to_vtk(vertices, deep=False))
    cells = vtkCellArray()
    cells.SetData(
        support.numpy_to_vtkIdTypeArray(offsets), support.numpy_to_vtkIdTypeArray(connectivity)
    )
    poly = vtkPolyData()
    poly.SetPoints(points)
    poly.SetPolys(cells)
    return poly


def _rgb(color: str) -> tuple[float, float, float]:
    value = int(color.lstrip("#"), 16)
    return ((value >> 16) / 255.0, ((value >> 8) & 0xFF) / 255.0, (value & 0xFF) / 255.0)


def render_views(
    mesh: MeshLike,
    *,
    out_dir: Path,
    views: Sequence[str] = VIEWS,
    size: tuple[int, int] = VIEW_SIZE,
    on_view: Callable[[int], None] | None = None,
) -> list[RenderedImage]:
    """One PNG per view (`view_<name>.png`), rendered in one window; the camera moves
    between the frames, the geometry is uploaded once."""
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401 - the OpenGL classes behind the factories
    from vtkmodules.vtkFiltersCore import vtkPolyDataNormals
    from vtkmodules.vtkRenderingCore import (
        vtkActor,
        vtkLightKit,
        vtkPolyDataMapper,
        vtkRenderer,
        vtkRenderWindow,
    )

    normals = vtkPolyDataNormals()  # smooth shading: point normals
    normals.SetInputData(to_polydata(mesh))
    normals.ComputeCellNormalsOff()
    normals.ComputePointNormalsOn()
    # Crisp CAD edges; above the threshold the split costs seconds and facets are tiny.
    normals.SetSplitting(len(mesh.faces) <= SPLIT_EDGES_MAX_FACES)
    normals.SetFeatureAngle(30.0)
    normals.ConsistencyOn()
    normals.AutoOrientNormalsOff()
    normals.NonManifoldTraversalOn()
    normals.Update()
    mapper = vtkPolyDataMapper()
    mapper.SetInputData(normals.GetOutput())
    mapper.ScalarVisibilityOff()
    actor = vtkActor()
    actor.SetMapper(mapper)
    prop = actor.GetProperty()
    prop.SetColor(*_rgb(MODEL_COLOR))
    prop.SetInterpolationToPhong()
    prop.SetAmbient(0.15)
    prop.SetDiffuse(0.85)
    prop.SetSpecular(0.25)
    prop.SetSpecularPower(20.0)

    renderer = vtkRenderer()
    renderer.AddActor(actor)
    renderer.GradientBackgroundOn()
    renderer.SetBackground(*_rgb(BACKGROUND_BOTTOM))
    renderer.SetBackground2(*_rgb(BACKGROUND_TOP))
    renderer.AutomaticLightCreationOff()
    vtkLightKit().AddLightsToRenderer(renderer)
    renderer.LightFollowCameraOn()
    renderer.GetActiveCamera().SetViewAngle(VIEW_ANGLE)
    renderer.SetUseFXAA(USE_FXAA)
    window = vtkRenderWindow()
    window.SetOffScreenRendering(True)
    window.SetMultiSamples(MULTI_SAMPLES)
    window.SetSize(*size)
    window.AddRenderer(renderer)
    try:
        images = []
        for index, view in enumerate(views):
            _place_camera(renderer, view)
            window.Render()
            pixels = _read_pixels(window, size)
            images.append(save_png(pixels, out_dir / f"view_{view}.png", name=f"view_{view}"))
            if on_view is not None:
                on_view(index + 1)
        return images
    finally:
        window.Finalize()


def _read_pixels(window: Any, size: tuple[int, int]) -> NDArray[np.uint8]:
    """The frame as rows from the top (what pyvista's screenshot read: the front buffer,
    resolved from the multisamples)."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

    support: Any = numpy_support  # untyped

    grab = vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.FixBoundaryOn()
    grab.ShouldRerenderOff()
    grab.SetInputBufferTypeToRGB()
    grab.ReadFrontBufferOn()
    grab.Update()
    flat = support.vtk_to_numpy(grab.GetOutput().GetPointData().GetScalars())
    return np.ascontiguousarray(flat.reshape(size[1], size[0], 3)[::-1])


def window_class() -> str:
    """The class of render window VTK makes here (its factory follows `use_backend`)."""
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401
    from vtkmodules.vtkRenderingCore import vtkRenderWindow

    window = vtkRenderWindow()
    try:
        return str(window.GetClassName())
    finally:
        window.Finalize()


def save_png(pixels: NDArray[np.uint8], path: Path, *, name: str) -> RenderedImage:
    """Write an RGB array as a PNG (zlib level 3: a third of level 6's time for a file about
    a fifth larger)."""
    image = Image.fromarray(pixels)
    image.save(path, format="PNG", compress_level=VIEW_PNG_COMPRESSION)
    return RenderedImage(name, path, image.width, image.height)


# View: the direction from the model to the camera, and the camera's up (pyvista's presets).
CAMERA_PRESETS = {
    "iso": ((1.0, 1.0, 1.0), (0.0, 0.0, 1.0)),
    "front": ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
    "top": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
    "right": ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
}


def _place_camera(renderer: Any, view: str) -> None:
    """Perspective for the iso view, parallel projection for the others; the model framed
    (VTK's ResetCamera) and zoomed a little."""
    if view not in CAMERA_PRESETS:
        raise ValueError(f"unknown view {view!r}")
    direction, up = CAMERA_PRESETS[view]
    bounds = renderer.ComputeVisiblePropBounds()
    center = np.array([bounds[0] + bounds[1], bounds[2] + bounds[3], bounds[4] + bounds[5]]) / 2
    camera = renderer.GetActiveCamera()
    camera.SetParallelProjection(view != "iso")
    camera.SetFocalPoint(*center)
    camera.SetPosition(*(center + np.array(direction)))
    camera.SetViewUp(*up)
    renderer.ResetCamera()
    renderer.ResetCameraClippingRange()
    camera.Zoom(1.2 if view == "iso" else 1.1)


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
            # PIL's `optimize` costs ten times the plain save for 6 % fewer bytes.
            image.resize((width, height), Image.Resampling.LANCZOS).save(path, format="PNG")
            thumbnails.append(RenderedImage(f"thumb_{width}", path, width, height))
    return thumbnails


def image_variance(path: Path) -> float:
    """Pixel variance of a PNG: zero for a blank (one-colour) image."""
    with Image.open(path) as image:
        return float(np.asarray(image.convert("L"), dtype=np.float64).var())
