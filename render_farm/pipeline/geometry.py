"""The geometry half of a render job (facts, web GLB), run beside the views.

Measuring the welded mesh, decimating it and writing the GLB need nothing from VTK, and
fast-simplification holds the GIL, so a big mesh has them done in a forked process while
this one renders: the fork happens before any OpenGL context or renderer thread exists, the
mesh is shared copy-on-write, and only the small result comes back through a pipe. A worker
that fails in any way is not trusted: the work is done again here, where a real error
(memory, a bad mesh) raises as it would have without the worker. The worker is in the render
child's process group, so the sandbox's timeout kills it with the child.
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from render_farm.pipeline.analyse import GeometryFacts, measure
from render_farm.pipeline.export import export_glb, simplify
from render_farm.pipeline.mesh import MeshLike

# Below this many triangles the work takes less than starting a process.
FORK_ABOVE_FACES = 100_000


@dataclass(frozen=True)
class GeometryOutputs:
    facts: GeometryFacts
    web_triangles: int
    seconds: float  # the work's own wall time, wherever it ran


def make_geometry_outputs(
    mesh: MeshLike, *, declared_units: str | None, glb_path: Path, web_max_faces: int
) -> GeometryOutputs:
    """Measure the welded mesh, decimate it to the web budget and write its GLB."""
    started = time.perf_counter()
    facts = measure(mesh, declared_units=declared_units)
    web = simplify(mesh, max_faces=web_max_faces)
    glb_path.write_bytes(export_glb(web))
    return GeometryOutputs(facts, len(web.faces), round(time.perf_counter() - started, 4))


class GeometryWork:
    """`make_geometry_outputs`, started now (forked for a big mesh), collected by `result`."""

    def __init__(
        self,
        mesh: MeshLike,
        *,
        declared_units: str | None,
        glb_path: Path,
        web_max_faces: int,
    ) -> None:
        self._mesh = mesh
        self._declared_units = declared_units
        self._glb_path = glb_path
        self._web_max_faces = web_max_faces
        self._process: multiprocessing.process.BaseProcess | None = None
        self._receiver: Connection | None = None
        self.forked = len(mesh.faces) > FORK_ABOVE_FACES
        if self.forked:
            context = multiprocessing.get_context("fork")
            receiver, sender = context.Pipe(duplex=False)
            self._process = context.Process(target=self._work, args=(sender,), daemon=True)
            self._process.start()
            sender.close()
            self._receiver = receiver

    def _work(self, sender: Connection) -> None:  # in the forked process
        sender.send(self._compute())
        sender.close()

    def _compute(self) -> GeometryOutputs:
        return make_geometry_outputs(
            self._mesh,
            declared_units=self._declared_units,
            glb_path=self._glb_path,
            web_max_faces=self._web_max_faces,
        )

    def result(self) -> GeometryOutputs:
        """The worker's outputs, or the same work done here if there was no worker or it
        failed."""
        outputs: object = None
        if self._process is not None and self._receiver is not None:
            try:
                outputs = self._receiver.recv()
                self._process.join()  # it has sent its last word and exits
            except EOFError:  # the worker died before sending
                outputs = None
            finally:
                self.close()
        if isinstance(outputs, GeometryOutputs):
            return outputs
        return self._compute()

    def close(self) -> None:
        """Stop a worker still running (the render failed) and release the pipe."""
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join()
            self._process.close()
            self._process = None
        if self._receiver is not None:
            self._receiver.close()
            self._receiver = None
