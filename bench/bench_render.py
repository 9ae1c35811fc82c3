"""Rendering: a 1M-triangle binary STL to four 1024x768 PNG views, thumbnails and a web GLB
through our render child (`python -m render_farm.child`, as a worker runs it: EGL on the CPU),
against f3d (PyPI `f3d`) rendering ONE 1024x768 view of the same file offscreen, also in a
fresh interpreter. Wall seconds from spawn to exit, the child's CPU seconds and peak RSS
(getrusage(RUSAGE_CHILDREN) in a fresh measuring process), medians of BENCH_RUNS (default 3).
The machine's load moves the wall seconds a lot: compare the ratio, and the CPU seconds.

    python -m bench.bench_render
    python -m bench.bench_render --measure ours|f3d STL OUT_DIR   (one run, JSON on stdout)
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import ROOT, median, print_table

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
GRID = 708  # a 708 x 708 height field: 2 * 707 * 707 = 999,698 triangles

F3D_SCRIPT = """
import sys, f3d
f3d.Engine.autoload_plugins()
engine = f3d.Engine.create_egl()
engine.window.size = (1024, 768)
engine.scene.add(sys.argv[1])
engine.window.render_to_image().save(sys.argv[2])
"""


def write_stl(path: Path, grid: int = GRID) -> int:
    """A wavy height field as a binary STL; returns its triangle count."""
    axis = np.linspace(-50.0, 50.0, grid, dtype=np.float32)
    x, y = np.meshgrid(axis, axis)
    z = (4 * np.sin(x / 7) * np.cos(y / 9)).astype(np.float32)
    vertices = np.stack([x, y, z], axis=-1).reshape(-1, 3)
    index = np.arange(grid * grid).reshape(grid, grid)
    a, b = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()
    c, d = index[1:, :-1].ravel(), index[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    corners = vertices[faces]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    record = np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    data = np.zeros(len(faces), dtype=record)
    data["n"] = normals
    data["v"] = corners
    with path.open("wb") as out:
        out.write(b"IdEinstein render benchmark".ljust(80, b" "))
        out.write(struct.pack("<I", len(faces)))
        out.write(data.tobytes())
    return len(faces)


def _measure_ours(stl: Path, out_dir: Path) -> dict[str, Any]:
    from render_farm.pipeline.contract import PipelineRequest
    from render_farm.sandbox import run_child

    request = PipelineRequest(source=stl, kind="stl", out_dir=out_dir)
    started = time.perf_counter()
    result = asyncio.run(
        run_child(
            {"backend": "egl", "egl_device": 0, "pipeline": request.to_dict()},
            timeout=600,
            work_dir=out_dir,
        )
    )
    seconds = time.perf_counter() - started
    names = sorted(o["name"] for o in result["outputs"])
    if not {"view_iso", "view_front", "view_top", "view_right", "model_glb"} <= set(names):
        raise SystemExit(f"missing outputs: {names}")
    return {"seconds": seconds, "outputs": names, "timings": result["timings"]}


def _measure_f3d(stl: Path, out_dir: Path) -> dict[str, Any]:
    png = out_dir / "f3d.png"
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", F3D_SCRIPT, str(stl), str(png)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - started
    if png.stat().st_size < 1000:
        raise SystemExit("f3d wrote no image")
    return {"seconds": seconds, "outputs": [png.name]}


def _one(side: str, stl: Path, out_dir: Path) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter: its RUSAGE_CHILDREN is that run's alone."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench.bench_render", "--measure", side, str(stl), str(out_dir)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-render-") as t:
        tmp = Path(t)
        stl = tmp / "grid.stl"
        triangles = write_stl(stl)
        size_mb = stl.stat().st_size / 1e6
        ours: list[dict[str, Any]] = []
        f3d: list[dict[str, Any]] = []
        for n in range(RUNS):  # interleaved, so both sides see the same machine load
            for side, results in (("ours", ours), ("f3d", f3d)):
                out = tmp / f"{side}-{n}"
                out.mkdir()
                results.append(_one(side, stl, out))
    print_table(
        f"Rendering: {triangles:,}-triangle binary STL ({size_mb:.0f} MB)"
        f"; ours: 4 PNG views + thumbnails + web GLB in the render child; reference: f3d 4.0, "
        f"ONE view (median of {RUNS}, wall seconds from spawn to exit, EGL on the CPU)",
        [
            (
                "seconds",
                median([r["seconds"] for r in ours]),
                median([r["seconds"] for r in f3d]),
                False,
            ),
            (
                "CPU seconds (user + system)",
                median([r["cpu_seconds"] for r in ours]),
                median([r["cpu_seconds"] for r in f3d]),
                False,
            ),
            (
                "peak RSS MiB",
                median([r["peak_mib"] for r in ours]),
                median([r["peak_mib"] for r in f3d]),
                False,
            ),
        ],
    )
    stages = {k: median([r["timings"].get(k, 0.0) for r in ours]) for k in ours[0]["timings"]}
    print("ours, stage seconds (median): " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
    print(f"load average after the runs: {os.getloadavg()[0]:.2f}")


def _measure_main(side: str, stl: Path, out_dir: Path) -> None:
    result = (_measure_ours if side == "ours" else _measure_f3d)(stl, out_dir)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    result["peak_mib"] = usage.ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--measure":
        _measure_main(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        main()
