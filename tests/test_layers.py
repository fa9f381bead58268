"""The layers, checked from the source: ui -> services -> core / storage, never back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imports(path: Path) -> set[str]:
    """Every module a file imports (absolute names; relative ones resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            name = ".".join(p for p in (base, node.module or "") if p)
            out.add(name)
    return out


@pytest.mark.parametrize("path", sorted((ROOT / "ui").glob("*.py")), ids=lambda p: p.name)
def test_the_ui_imports_only_gradio_its_helpers_and_the_service_layer(path):
    banned = ("storage", "spatialreward.rl", "spatialreward.bench", "spatialreward.backends",
              "spatialreward.mini", "spatialreward.vlm", "torch")
    bad = sorted(m for m in imports(path) if m.startswith(banned))
    assert not bad, f"{path.name} imports {bad}; go through spatialreward.service"


@pytest.mark.parametrize("path", sorted((ROOT / "storage").glob("*.py")), ids=lambda p: p.name)
def test_storage_imports_no_model_bench_or_service_package(path):
    banned = ("spatialreward.bench", "spatialreward.service", "spatialreward.backends",
              "spatialreward.mini", "spatialreward.vlm", "spatialreward.rl", "ui")
    bad = sorted(m for m in imports(path) if m.startswith(banned))
    assert not bad, f"{path.name} imports {bad}: data flows ui -> services -> storage"
