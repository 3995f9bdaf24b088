"""The package's one module map holds: the package docstring and README's architecture table
name every module, no other name, each in the same stage; and the imports follow that map
(no cycle, function-level imports included; a function-level import never points to a later stage)."""

from __future__ import annotations

import ast
import pkgutil
import re
from pathlib import Path

import networkx as nx

import dftscreen

from conftest import REPO

PACKAGE = Path(dftscreen.__file__).parent


def package_modules() -> set[str]:
    return {info.name for info in pkgutil.iter_modules(dftscreen.__path__)}


def docstring_stages() -> dict[str, list[str]]:
    """Stage -> modules, from the package docstring's ``- <stage>: :mod:`a`, ...`` list, in order."""
    stages: dict[str, list[str]] = {}
    for item in re.split(r"\n- ", (dftscreen.__doc__ or "").split("\n- ", 1)[1]):
        stage, modules = item.split(":", 1)
        stages[stage.strip()] = re.findall(r":mod:`(\w+)`", modules)
    return stages


def readme_stages() -> dict[str, list[str]]:
    """Stage -> modules, from README's architecture table (names in parentheses are explanations)."""
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("| stage | rule file | modules (`src/dftscreen/`) |"):]
    table = table[: table.index("\n\n")]
    stages: dict[str, list[str]] = {}
    for line in table.splitlines()[2:]:
        stage, _, modules = (cell.strip() for cell in line.strip().strip("|").split("|"))
        while re.search(r"\([^()]*\)", modules):
            modules = re.sub(r"\([^()]*\)", "", modules)
        stages[stage] = re.findall(r"`(\w+)`", modules)
    return stages


def test_package_docstring_names_every_module_and_no_other():
    named = [m for modules in docstring_stages().values() for m in modules]
    assert len(named) == len(set(named)), "a module is named twice"
    assert set(named) == package_modules()


def test_readme_architecture_table_names_every_module_and_no_other():
    named = [m for modules in readme_stages().values() for m in modules]
    assert len(named) == len(set(named)), "a module is named twice"
    assert set(named) - package_modules() == set(), "README names modules that do not exist"
    assert package_modules() - set(named) == set(), "README does not name these modules"


def test_readme_and_docstring_file_each_module_under_the_same_stage_in_the_same_order():
    readme = {stage: set(modules) for stage, modules in readme_stages().items()}
    docstring = {stage: set(modules) for stage, modules in docstring_stages().items()}
    assert list(readme) == list(docstring)
    assert readme == docstring


def imports() -> list[tuple[str, str, bool]]:
    """(importer, imported, at function level) for every import between the package's modules,
    ``if TYPE_CHECKING:`` blocks aside (they never run)."""
    modules = package_modules()
    found: list[tuple[str, str, bool]] = []

    def visit(module: str, node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names: list[str] = []
            if isinstance(child, ast.ImportFrom) and child.module == "dftscreen":
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and (child.module or "").startswith("dftscreen."):
                names = [child.module.split(".")[1]]
            elif isinstance(child, ast.Import):
                names = [a.name.split(".")[1] for a in child.names if a.name.startswith("dftscreen.")]
            found.extend((module, name, nested) for name in names if name in modules and name != module)
            visit(module, child, nested)

    for path in PACKAGE.glob("*.py"):
        if path.stem != "__init__":
            visit(path.stem, ast.parse(path.read_text()), False)
    return found


def test_no_import_cycle_counting_function_level_imports():
    graph = nx.DiGraph((a, b) for a, b, _ in imports())
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert cycles == []


def test_function_level_imports_never_point_to_a_later_stage():
    stage_of = {m: n for n, modules in enumerate(docstring_stages().values()) for m in modules}
    later = sorted((a, b) for a, b, nested in imports() if nested and stage_of[b] > stage_of[a])
    assert later == []


def test_the_import_walk_sees_function_level_imports():
    """The checks above can fail: the walk finds a known function-level import."""
    assert ("status", "cost", True) in imports()


def test_functions_stay_short_and_common_smk_holds_input_functions_only():
    """Issue 27's limits: no function of the package or the workflow scripts over 120 lines, and
    workflow/rules/common.smk (start-up checks and input functions) under 450 lines."""
    paths = [*PACKAGE.glob("*.py"), *(REPO / "workflow" / "scripts").glob("*.py")]
    long = [
        f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in paths
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 120
    ]
    assert long == []
    assert len((REPO / "workflow" / "rules" / "common.smk").read_text().splitlines()) < 450
