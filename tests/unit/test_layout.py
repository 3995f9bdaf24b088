"""The results-folder layout: one owner, and the paths a finished run already has on disk.

The strings are what the rules wrote before the layout had an owner: a change here
would make Snakemake recompute finished runs (or lose them), so it must be deliberate.
"""

from __future__ import annotations

import pytest

from dftscreen.layout import ResultsLayout


def test_paths_are_the_historical_ones():
    layout = ResultsLayout("results")
    assert layout.checks_table == "results/check/checks.json"
    assert layout.valid_ids == "results/check/valid_ids.txt"
    assert layout.inputs_dir == "results/inputs"
    assert layout.relax_record("NaCl") == "results/dft/NaCl/relax.json"
    assert layout.properties_record("NaCl") == "results/dft/NaCl/properties.json"
    assert layout.relaxed_cif("NaCl") == "results/dft/NaCl/relaxed.cif"
    assert layout.structure_dir("NaCl") == "results/dft/NaCl"
    assert layout.element_record("Na") == "results/references/elements/Na/relax.json"
    assert layout.phase_record("rocksalt") == "results/references/phases/rocksalt/relax.json"
    assert layout.log("relax", "NaCl") == "results/logs/relax/NaCl.log"
    assert layout.log("check") == "results/logs/check.log"
    assert layout.results_csv == "results/results.csv"
    assert layout.summary == "results/summary.json"
    assert layout.cohorts_csv == "results/cohorts.csv" and layout.cohorts_json == "results/cohorts.json"
    assert layout.partial_csv == "results/results_partial.csv"


def test_wildcards_and_unnormalised_roots_pass_through_verbatim():
    # Snakemake matches outputs by their text: "./out" must not become "out".
    assert ResultsLayout("./out").relax_record("{sid}") == "./out/dft/{sid}/relax.json"
    assert (
        ResultsLayout("/abs/run 07").element_record("{element}")
        == "/abs/run 07/references/elements/{element}/relax.json"
    )


def test_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="unknown DFT stage"):
        ResultsLayout("out").stage_record("NaCl", "relaxx")


def test_reference_records_are_found_on_disk(tmp_path):
    layout = ResultsLayout.of(tmp_path)
    for element in ("O", "Na"):
        path = tmp_path / "references" / "elements" / element / "relax.json"
        path.parent.mkdir(parents=True)
        path.write_text("{}")
    assert [p.parent.name for p in layout.element_records()] == ["Na", "O"]
    assert layout.phase_records() == []


def test_rules_ask_the_layout_for_every_path():
    """No rule file spells a path under output_dir itself: renaming one in layout.py renames it everywhere."""
    from conftest import REPO

    for rules in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        code = [line for line in rules.read_text().splitlines() if not line.lstrip().startswith("#")]
        spelled = [line.strip() for line in code if 'f"{OUT}/' in line]
        assert spelled == [], f"{rules.name} spells out paths under output_dir: {spelled}"


def _string_literals(source: str) -> list[str]:
    """The string literals of a module's code (docstrings aside: prose may name a file)."""
    import ast

    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_library_and_scripts_ask_the_layout_for_every_file_name():
    """No module of src/dftscreen but layout.py, and no workflow script, spells a file name of the
    results folder or the reference library (``relax.json``, ``start.cif``, ``checks.json``, ...)."""
    import re

    from conftest import REPO

    layout_source = (REPO / "src" / "dftscreen" / "layout.py").read_text()
    file_name = re.compile(r"[\w.-]+\.(json|cif|txt|csv|parquet|html)")
    names = {value for value in _string_literals(layout_source) if file_name.fullmatch(value)}
    assert {"relax.json", "start.cif", "checks.json", "relaxed.cif"} <= names  # the check can fail
    modules = [p for p in (REPO / "src" / "dftscreen").glob("*.py") if p.name != "layout.py"]
    modules += sorted((REPO / "workflow" / "scripts").glob("*.py"))
    spelled = sorted(
        f"{path.name}: {value!r}"
        for path in modules
        for value in _string_literals(path.read_text())
        if value in names or any(f"/{name}" in value for name in names)
    )
    assert spelled == []


def test_only_a_structures_relaxation_keeps_its_gpaw_state_for_the_single_point():
    """relaxed.gpw is written beside dft/<id>/relax.json only: references and phases have no single point."""
    from dftscreen.layout import RELAXATION_RESTART_NAME, ReferenceLibrary, relaxation_has_single_point

    layout = ResultsLayout("out")
    assert relaxation_has_single_point(layout.relax_record("NaCl_rank01"))
    assert layout.relaxation_restart("NaCl_rank01") == f"out/dft/NaCl_rank01/{RELAXATION_RESTART_NAME}"
    assert not relaxation_has_single_point(layout.phase_record("NaCl_mp-22862"))
    library = ReferenceLibrary("out/reference_library", "0123456789abcdef")
    assert not relaxation_has_single_point(library.phase_record("NaCl-abc"))
    assert not relaxation_has_single_point(library.element_record("Na", "auto"))
