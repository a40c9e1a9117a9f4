"""The architecture rule from STYLE.md: the mlops library never imports Prefect, flows or tasks."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

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


def test_only_the_great_expectations_adapter_imports_great_expectations():
    # The plan (contract + rules -> expectations) is ours and testable without GE.
    importers = sorted(
        str(p.relative_to(LIBRARY)) for p in LIBRARY.rglob("*.py") if "great_expectations" in _imports(p)
    )
    assert importers == ["validation/ge_adapter.py"]


SUBPACKAGES = sorted(
    ".".join(("mlops", *init.parent.relative_to(LIBRARY).parts))
    for init in LIBRARY.rglob("__init__.py")
    if init.parent != LIBRARY
)


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_each_subpackage_states_its_public_names(package):
    module = importlib.import_module(package)
    public = getattr(module, "__all__", None)
    assert public, f"{package}/__init__.py has no __all__"
    assert sorted(set(public)) == sorted(public)
    assert [name for name in public if not hasattr(module, name)] == []


def test_drift_lives_in_its_package_only():
    # One home per concept: no flat drift_* modules beside mlops/drift/.
    assert sorted(p.name for p in LIBRARY.glob("drift*.py")) == []
    assert (LIBRARY / "drift" / "__init__.py").is_file()


def test_only_the_feast_adapter_imports_feast():
    # Feast's API moved across its recent releases: when it moves again, one file changes.
    importers = sorted(str(p.relative_to(LIBRARY)) for p in LIBRARY.rglob("*.py") if "feast" in _imports(p))
    assert importers == ["features/store.py"]
