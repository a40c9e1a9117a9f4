"""The architecture rule from STYLE.md: the mlops library never imports Prefect, flows or tasks."""

from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[2] / "mlops"
# The CLI is the composition root: it starts flows, importing them lazily inside commands.
COMPOSITION_ROOT = {"cli.py"}
FORBIDDEN = ("prefect", "flows", "tasks")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_library_modules_do_not_import_orchestration():
    offenders = {
        str(path.relative_to(LIBRARY)): sorted(_imports(path) & set(FORBIDDEN))
        for path in LIBRARY.rglob("*.py")
        if path.name not in COMPOSITION_ROOT
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_cli_imports_orchestration_only_inside_functions():
    tree = ast.parse((LIBRARY / "cli.py").read_text())
    top_level = {
        (node.module or "").split(".")[0]
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
    } | {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    assert not top_level & set(FORBIDDEN)


def test_only_the_evidently_adapter_imports_evidently():
    # The drift decisions are our own code; Evidently is read in one module, for the HTML report.
    importers = sorted(str(p.relative_to(LIBRARY)) for p in LIBRARY.rglob("*.py") if "evidently" in _imports(p))
    assert importers == ["drift/evidently_adapter.py"]


def _packages() -> list[Path]:
    return sorted(p.parent for p in LIBRARY.rglob("__init__.py") if p.parent != LIBRARY)


def test_each_subpackage_states_its_public_names():
    # A subpackage's __init__ is its front door: __all__ lists what callers use, and each resolves.
    import importlib

    missing, broken = [], {}
    for package in _packages():
        name = "mlops." + ".".join(package.relative_to(LIBRARY).parts)
        module = importlib.import_module(name)
        if not isinstance(getattr(module, "__all__", None), list):
            missing.append(name)
            continue
        unresolved = [n for n in module.__all__ if not hasattr(module, n)]
        if unresolved:
            broken[name] = unresolved
    assert missing == [] and broken == {}


def test_drift_lives_in_its_package_only():
    # One home per concept: no flat drift_* modules beside mlops/drift/.
    assert sorted(p.name for p in LIBRARY.glob("drift*.py")) == []
    assert (LIBRARY / "drift" / "__init__.py").is_file()
