"""Build `web/` (npm ci + tsc + vite build) when its dist is missing or older than its sources.

The same rule as the Makefile's `web` target, for test runs that do not go through make. A
file lock keeps pytest-xdist workers from building at the same time.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
DIST = WEB / "dist"
STAMP = DIST / "index.html"
SOURCES = ("src", "public", "index.html", "dashboard/index.html", "package.json",
           "package-lock.json", "tsconfig.json", "vite.config.ts")  # fmt: skip


def _newest_source() -> float:
    newest = 0.0
    for name in SOURCES:
        path = WEB / name
        files = path.rglob("*") if path.is_dir() else [path]
        for file in files:
            if file.is_file():
                newest = max(newest, file.stat().st_mtime)
    return newest


def is_stale() -> bool:
    return not STAMP.is_file() or STAMP.stat().st_mtime < _newest_source()


def ensure_web_built() -> Path:
    """The built pages' directory; builds them first if needed (fails if npm is missing)."""
    if not is_stale():
        return DIST
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is needed to build web/ for the browser tests (apt-get install npm)")
    with (Path(tempfile.gettempdir()) / "ideinstein-web-build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_stale():  # another worker may have built it while we waited
            env = {**os.environ, "npm_config_update_notifier": "false"}
            if not (WEB / "node_modules" / ".package-lock.json").is_file():
                subprocess.run(  # noqa: S603
                    [npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, env=env, check=True
                )
            subprocess.run([npm, "run", "build"], cwd=WEB, env=env, check=True)  # noqa: S603
    return DIST
