"""The package's layers: evaluation, inference and models never import the training engine (so extracting or
scoring needs no trainer, and there is no import cycle); losses and data never import models' consumers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cmft"

# package -> the cmft packages it must never import (at module level or inside a function)
FORBIDDEN = {
    "evaluation": {"engine", "cli", "serve"},
    "inference": {"engine", "cli", "serve"},
    "models": {"engine", "evaluation", "inference", "cli", "serve", "search"},
    "losses": {"engine", "evaluation", "inference", "cli", "serve", "search"},
    "data": {"engine", "models", "losses", "evaluation", "inference", "cli", "serve", "search"},
    "ingest": {"engine", "cli", "serve"},
    "tracking": {"engine", "cli", "serve", "ingest"},
}


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every ``cmft.x`` module ``path`` imports, absolute or relative, with its line."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            out.append((node.lineno, base))
    return [(line, name) for line, name in out if name == "cmft" or name.startswith("cmft.")]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_never_imports_what_sits_above_it(layer: str) -> None:
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for line, name in _imports(path):
            parts = name.split(".")
            if len(parts) > 1 and parts[1] in FORBIDDEN[layer]:
                bad.append(f"{path.relative_to(PACKAGE)}:{line} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_check_sees_imports() -> None:
    """The scanner finds absolute and relative imports (so an empty result above means something)."""
    found = {name for _, name in _imports(PACKAGE / "engine" / "trainer.py")}
    assert "cmft.engine.checkpoint" in found and "cmft.models.registry" in found
    found = {name for _, name in _imports(PACKAGE / "tracking" / "detectors" / "spec.py")}
    assert "cmft.tracking.detectors.base" in found
