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
