"""The real CAD exports beside the repository (`../shared/cad-samples`, see its SOURCES.md).

CI checks the repository out with `shared/` beside it; a developer's tree has it too. Under
`CI=true` a missing folder fails the test; elsewhere the test is skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CAD_SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "cad-samples"


def cad_sample(name: str) -> Path:
    """The path of one sample file, e.g. `cad_sample("angle_block.STL")`."""
    path = CAD_SAMPLES / name
    if not path.is_file():
        message = f"CAD sample {name} not found in {CAD_SAMPLES}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: the shared folder must be there)")
        pytest.skip(message)
    return path
