"""Floors (ARCHITECTURE.md): a package imports only from floors below it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FLOORS = {"core": 1, "db": 2, "storage": 3, "render_farm": 4, "hub": 4, "api": 5}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_no_package_imports_upward_or_sideways() -> None:
    violations = []
    for package, floor in FLOORS.items():
        for path in (ROOT / package).rglob("*.py"):
            for target in _imports(path) & FLOORS.keys():
                if target == package:
                    continue
                if FLOORS[target] > floor or (FLOORS[target] == floor == 4):
                    violations.append(f"{path.relative_to(ROOT)} imports {target}")
    assert violations == []


def test_no_dead_redis_client() -> None:
    for package in FLOORS:
        for path in (ROOT / package).rglob("*.py"):
            assert "aioredis" not in _imports(path), path


def test_the_service_process_does_not_load_the_geometry_stack() -> None:
    """trimesh, scipy and VTK cost the hub ~120 MB; they belong in render children only."""
    import subprocess
    import sys

    probe = (
        "import sys, api.app; "
        "print(sorted(m for m in ('trimesh', 'scipy', 'vtk', 'pyvista', 'numpy') "
        "if m in sys.modules))"
    )
    loaded = subprocess.run(  # noqa: S603 (our own interpreter and a fixed probe)
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
