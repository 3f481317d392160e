"""The layering of doc/isrinject/layout.rst holds: imports point one way.

Every module's import statements (module level, inside functions and under
``if TYPE_CHECKING:``) are read with ``ast``, so a lazy import inside a
function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "isrinject"

#: Subpackage → the isrinject subpackages it may import from (besides itself).
ALLOWED = {
    "engine": set(),
    "sim": {"engine"},
    "tasks": {"engine"},
    "diagnostics": {"engine", "tasks"},
    "demo": {"engine", "tasks", "diagnostics", "sim"},
    "cli": {"engine", "tasks", "diagnostics", "demo", "sim"},
}
#: Third-party modules the engine must not import (it runs without a butler).
NOT_IN_ENGINE = ("lsst.pipe.base", "lsst.ctrl")


def _imports(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import statement of one module of the package at ``root``."""
    package = path.relative_to(root.parent).parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = ".".join(package[: len(package) - node.level + 1])
            if node.module:
                found.append((node.lineno, f"{base}.{node.module}"))
            else:  # ``from . import stats``: the names are submodules
                found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, node.module or ""))
    return found


def _modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py"))


def test_every_module_is_in_a_layer() -> None:
    top = {path.relative_to(PACKAGE).parts[0] for path in _modules() if len(path.relative_to(PACKAGE).parts) > 1}
    assert top == set(ALLOWED), top


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_point_one_way(layer: str) -> None:
    wrong = []
    for path in (PACKAGE / layer).rglob("*.py"):
        for line, name in _imports(path):
            parts = name.split(".")
            if parts[0] == "isrinject" and len(parts) > 1 and parts[1] in ALLOWED:
                if parts[1] != layer and parts[1] not in ALLOWED[layer]:
                    wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {name}")
            if layer == "engine" and name.startswith(NOT_IN_ENGINE):
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_checker_resolves_relative_and_lazy_imports(tmp_path: Path) -> None:
    # The rule is only as good as the parser: relative imports one and two
    # levels up, ``from . import x`` and an import inside a function resolve
    # to the modules they name.
    module = tmp_path / "isrinject" / "engine" / "draw" / "render.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "from . import fast\nfrom .geometry import x\nfrom ..flags import F\n"
        "def f():\n    from ...tasks.visit import VisitInjectTask\n    import lsst.pipe.base\n"
    )
    names = [name for _, name in _imports(module, tmp_path / "isrinject")]
    assert names == ["isrinject.engine.draw.fast", "isrinject.engine.draw.geometry", "isrinject.engine.flags",
                     "isrinject.tasks.visit", "lsst.pipe.base"]
