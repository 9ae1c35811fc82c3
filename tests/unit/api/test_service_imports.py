"""The service process loads libraries it may never use only when it uses them: its idle
memory is what a big upload's peak stands on (issue #6: under 150 MB with S3)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# library: what loads it, and its cost on import
LAZY = {
    "zxcvbn": "the first password-strength check (~12 MB of dictionaries)",
    "authlib": "the first configured OpenID provider (~3.5 MB with httpx2 and joserfc)",
    "httpx2": "the first configured OpenID provider",
    "joserfc": "the first configured OpenID provider",
    "botocore": "an S3 blob store (STORAGE_URL=s3://...)",
    "celery": "the Celery dispatcher (REDIS_URL set) or the worker (~5 MB with kombu)",
}


def test_serving_imports_none_of_the_lazy_libraries() -> None:
    probe = (
        "import sys, api.cli, api.app; "
        f"print(sorted(m for m in {sorted(LAZY)!r} if m in sys.modules))"
    )
    loaded = subprocess.run(  # noqa: S603 (our own interpreter and a fixed probe)
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
