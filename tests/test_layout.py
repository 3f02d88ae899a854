"""The package's shape: imports run one way between the sub-packages, and modules stay small.

``artsy.job`` and ``artsy.training`` use ``artsy.models`` and ``artsy.features`` and never each
other; ``models`` and ``features`` import neither flow; the top modules (``config``, ``io``,
``testing``) import no sub-package. Every import counts, including lazy ones inside functions and
``TYPE_CHECKING`` ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import artsy

PACKAGE = Path(artsy.__file__).resolve().parent
#: Sub-packages each layer may import (besides itself and the top modules).
ALLOWED = {
    "job": {"models", "features"},
    "training": {"models", "features"},
    "models": {"features"},
    "features": set(),
    "top": set(),
}
MAX_LINES = 400


def _layer(path: Path) -> str:
    relative = path.relative_to(PACKAGE).parts
    return relative[0] if len(relative) > 1 else "top"


def _imported_layers(path: Path) -> set[str]:
    """Sub-packages of artsy that ``path`` imports anywhere in its code."""
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "artsy" and len(parts) > 1 and parts[1] in ALLOWED:
                layers.add(parts[1])
    return layers


MODULES = sorted(path for path in PACKAGE.rglob("*.py") if "default_bundle" not in path.parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_imports_run_one_way(path):
    layer = _layer(path)
    if path.parent == PACKAGE and path.name == "__init__.py":
        return  # artsy/__init__.py names public functions of every layer (lazily)
    forbidden = _imported_layers(path) - ALLOWED[layer] - {layer}
    assert not forbidden, f"{path.relative_to(PACKAGE)} ({layer}) imports {sorted(forbidden)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_modules_stay_small(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_the_public_names_are_importable_from_artsy():
    for name in artsy.__all__:
        assert getattr(artsy, name) is not None
