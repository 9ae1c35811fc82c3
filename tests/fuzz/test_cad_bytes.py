"""Fuzzing the render pipeline with broken CAD files: real samples (STL, PLY, GLB, 3MF, OBJ,
STEP), truncated or with bytes overwritten, rendered by the sandboxed child as a worker runs it
(`render_farm.sandbox.run_child`, EGL on the CPU). Each one renders, or fails with a clean
code (corrupt_file, unsupported_format, too_large); the child never dies of a native crash, and
the parent (this test) is never touched.

Each example starts a render child (~1-2 s): FUZZ_CAD_EXAMPLES (default 12) keeps it small.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from render_farm.pipeline.errors import FailureCode, PipelineError
from render_farm.pipeline.run import PipelineLimits, PipelineRequest
from render_farm.sandbox import run_child
from tests.cad_samples import cad_sample

pytestmark = pytest.mark.timeout(240)

EXAMPLES = int(os.environ.get("FUZZ_CAD_EXAMPLES", "12"))
SAMPLES = {
    "angle_block.STL": "stl",
    "octagonal_pocket.ply": "ply",
    "pins.glb": "glb",
    "featuretype.3MF": "3mf",
    "fandisk.obj": "obj",
    "base_interface_AP203.STEP": "step",
}
CLEAN_FAILURES = {FailureCode.CORRUPT_FILE, FailureCode.UNSUPPORTED_FORMAT, FailureCode.TOO_LARGE}


@st.composite
def broken(draw: st.DrawFn, data: bytes) -> bytes:
    how = draw(st.sampled_from(["truncate", "overwrite", "both"]))
    out = bytearray(data)
    if how in ("overwrite", "both"):
        for _ in range(draw(st.integers(1, 16))):
            at = draw(st.integers(0, len(out) - 1))
            chunk = draw(st.binary(min_size=1, max_size=32))
            out[at : at + len(chunk)] = chunk
    if how in ("truncate", "both"):
        out = out[: draw(st.integers(0, len(out)))]
    return bytes(out)


def fuzz_cad(samples: dict[str, tuple[bytes, str]], work: Path) -> list[str]:
    problems: list[str] = []
    counter = iter(range(10**6))

    @st.composite
    def cases(draw: st.DrawFn) -> tuple[str, bytes]:
        name = draw(st.sampled_from(sorted(samples)))
        return name, draw(broken(samples[name][0]))

    @given(case=cases())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def render(case: tuple[str, bytes]) -> None:
        name, data = case
        folder = work / f"case-{next(counter)}"
        (folder / "out").mkdir(parents=True)
        source = folder / f"source.{samples[name][1]}"
        source.write_bytes(data)
        request = PipelineRequest(
            source=source,
            kind=samples[name][1],
            out_dir=folder / "out",
            limits=PipelineLimits(view_size=(160, 120)),
        )
        payload = {"backend": "egl", "egl_device": 0, "pipeline": request.to_dict()}
        try:
            asyncio.run(run_child(payload, timeout=90, work_dir=folder))
        except PipelineError as exc:
            if exc.code not in CLEAN_FAILURES:
                problems.append(f"{name} ({len(data)} bytes): {exc.code.value}: {exc.message}")

    render()
    return problems


async def test_broken_cad_files_fail_with_a_clean_code(tmp_path: Path) -> None:
    samples = {name: (cad_sample(name).read_bytes(), kind) for name, kind in SAMPLES.items()}
    problems = await asyncio.to_thread(fuzz_cad, samples, tmp_path)
    assert problems == []
