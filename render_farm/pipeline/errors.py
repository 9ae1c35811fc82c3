"""The pipeline's failures: one stable code each, the same codes a failed render job carries."""

from __future__ import annotations

from enum import StrEnum


class FailureCode(StrEnum):
    UNSUPPORTED_FORMAT = "unsupported_format"  # not a kind the farm renders
    CORRUPT_FILE = "corrupt_file"  # unreadable, truncated, or holds no triangles
    TOO_LARGE = "too_large"  # over the byte, triangle or memory limit
    TIMEOUT = "timeout"  # the render went past its time limit
    RENDER_CRASHED = "render_crashed"  # the child process died (a signal, a native crash)
    RENDERER_UNAVAILABLE = "renderer_unavailable"  # no working OpenGL backend
    SOURCE_MISSING = "source_missing"  # the version's blob is not in the store
    TOO_MANY_ATTEMPTS = "too_many_attempts"  # delivered again and again without finishing


class PipelineError(Exception):
    def __init__(self, code: FailureCode, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code.value}: {message}")
