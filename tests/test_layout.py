"""The layout holds: imports point down the pipeline (docs/ARCHITECTURE.md), and the write path
loads no rollback code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "orchestrator_migrate"

# Bottom to top; a module may import from its own layer and the layers below it.
LAYERS = [
    {"model", "version", "logs", "progress"},
    {"config", "history"},
    {"backends"},
    {"detect", "backup"},
    {"planning"},
    {"context"},
    {"apply", "undo"},
    {"operate"},
    {"api"},
    {"compat", "cli", "__init__", "__main__"},
]


def _layer(part: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if part in names)


def _imports(path: Path) -> list[str]:
    """The package's first-level parts that a module imports (relative imports resolved)."""
    rel = path.relative_to(PACKAGE).with_suffix("").parts
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(rel[:-1])[: len(rel) - node.level] if node.level > 1 else list(rel[:-1])
            target = [*base, *(node.module.split(".") if node.module else [])]
            if not target:  # `from . import x` at the top: x is the module
                target = [alias.name for alias in node.names][:1]
            found.append(target[0])
    return found


def test_imports_point_down_the_pipeline() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = path.relative_to(PACKAGE).with_suffix("").parts[0]
        for part in _imports(path):
            if _layer(part) > _layer(own):
                upward.append(f"{path.relative_to(PACKAGE)} imports {part}")
    assert not upward, upward


def test_the_write_path_loads_no_rollback_code() -> None:
    code = (
        "import sys, orchestrator_migrate.apply.runner\n"
        "print([m for m in sys.modules if m.startswith('orchestrator_migrate.undo')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
