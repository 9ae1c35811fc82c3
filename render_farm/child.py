"""The render child: `python -m render_farm.child` runs one pipeline (or a backend probe).

It reads a JSON request on stdin and writes JSON lines on stdout: `{"progress": [stage, pct]}`
while it works, then one `{"result": ...}` or `{"error": {"code", "message"}}`. Native
libraries (OpenCASCADE, VTK) print to stdout; the protocol keeps a private copy of the original
stdout and everything else written to fd 1 goes to stderr. A native crash kills only this
process: the parent sees the signal and fails the job with `render_crashed`.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path
from typing import Any, TextIO


def _protocol_stream() -> TextIO:
    """Keep the real stdout for the protocol; send fd 1 (C libraries' printf) to stderr."""
    sys.stdout.flush()
    private = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(private, "w", buffering=1, encoding="utf-8")


def _limit_memory(limit_bytes: int) -> None:
    if limit_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))


def _send(stream: TextIO, message: dict[str, Any]) -> None:
    stream.write(json.dumps(message) + "\n")
    stream.flush()


def run(request: dict[str, Any], stream: TextIO) -> int:
    from render_farm.pipeline.errors import FailureCode, PipelineError
    from render_farm.pipeline.render import use_backend

    use_backend(str(request["backend"]), egl_device=int(request["egl_device"]))
    _limit_memory(int(request.get("memory_limit", 0)))
    try:
        if request.get("probe"):
            from render_farm.pipeline.probe import probe_render

            _send(stream, {"result": probe_render(Path(request["out_dir"]))})
            return 0
        from render_farm.pipeline.run import PipelineRequest, run_pipeline

        def report(stage: str, percent: int) -> None:
            _send(stream, {"progress": [stage, percent]})

        result = run_pipeline(PipelineRequest.from_dict(request["pipeline"]), report)
        _send(stream, {"result": result.to_dict()})
        return 0
    except PipelineError as exc:
        _send(stream, {"error": {"code": exc.code.value, "message": exc.message}})
        return 3
    except MemoryError:
        message = "the render went over its memory limit"
        _send(stream, {"error": {"code": FailureCode.TOO_LARGE.value, "message": message}})
        return 3


def main() -> int:
    stream = _protocol_stream()
    request = json.loads(sys.stdin.read())
    return run(request, stream)


if __name__ == "__main__":
    sys.exit(main())
