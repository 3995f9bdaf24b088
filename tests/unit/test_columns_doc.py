"""docs/columns.md and the columns the code writes agree (both ways)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from conftest import COLUMNS_DOC, INPUT_COLUMN_PLACEHOLDER, documented_columns, undocumented
from dftscreen.aggregate import COLUMNS, STABILITY_COLUMNS, check_columns, table_from_results
from dftscreen.io import atomic_write_json
from dftscreen.settings import resolve_settings
from dftscreen.targets import TARGET_KINDS, target_columns


def static_columns() -> set[str]:
    """Every column name the code can write, except target and table-input columns."""
    from dftscreen.ml import ML_COLUMNS, ML_E_HULL_COLUMN, ML_E_HULL_COLUMN_NO_PHASES

    from dftscreen.compare_known import NOVELTY_COLUMNS, RELAXED_NOVELTY_COLUMNS

    ml = {*ML_COLUMNS, ML_E_HULL_COLUMN, ML_E_HULL_COLUMN_NO_PHASES}
    known = {"smact_valid", *RELAXED_NOVELTY_COLUMNS, *(c for columns in NOVELTY_COLUMNS.values() for c in columns)}
    return set(COLUMNS) | set(check_columns()) | set(STABILITY_COLUMNS) | ml | known


def test_every_column_the_code_writes_is_documented():
    target = [c for name in TARGET_KINDS for c in target_columns(name)]
    assert undocumented(sorted(static_columns()) + target) == []


def test_every_documented_column_is_still_written():
    literal = {name for name in documented_columns() if "<" not in name}
    assert literal - static_columns() == set(), f"{COLUMNS_DOC} describes columns the code no longer writes"
    # Each pattern (target columns) stands for columns the code writes.
    target = [c for name in TARGET_KINDS for c in target_columns(name)]
    for pattern in (n for n in documented_columns() if "<" in n and INPUT_COLUMN_PLACEHOLDER not in n):
        regex = re.compile("^" + re.sub(r"<[^>]+>", "[A-Za-z0-9_]+", pattern) + "$")
        assert any(regex.match(c) for c in target), pattern


def test_each_column_documented_once_with_a_unit_and_description():
    names = documented_columns()
    assert len(names) == len(set(names)), [n for n in names if names.count(n) > 1]
    for line in COLUMNS_DOC.read_text().splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
            assert len(cells) >= 3 and cells[1] and len(cells[2]) > 10, line


def test_a_real_table_has_only_documented_columns(tmp_path: Path):
    """A table built by the code (stability on, every target, a table-input column) against the page."""
    out = tmp_path / "out"
    check = {
        "structure_id": "a",
        "source_file": "t.csv row 0",
        "valid": False,
        "status": "invalid",
        "reason": "no atoms",
        "Prompt": "<prompt>",
        "reason_input": 1,
    }
    atomic_write_json(out / "check" / "checks.json", [check])
    atomic_write_json(
        out / "references" / "elements" / "Na" / "relax.json",
        {"status": "relaxed", "element": "Na", "formula": "Na", "energy_eV": -1.3},
    )
    targets = {
        "file": None,
        "id_column": "structure_id",
        "properties": {name: {"source_column": "t"} for name in TARGET_KINDS},
    }
    table = table_from_results(out, True, None, run_settings=resolve_settings("test"))
    table = table.assign(t=1.0)
    from dftscreen.aggregate import add_targets

    table = add_targets(table, targets).drop(columns=["t"])
    assert undocumented(list(table.columns), input_columns=["Prompt", "reason_input"]) == []
    assert isinstance(table, pd.DataFrame) and len(table) == 1


def test_table_input_columns_are_prefixed_against_every_column_the_code_writes():
    """dftscreen.columns (the names a table-input column must not take) knows every column above."""
    from dftscreen.columns import results_columns

    target = {c for name in TARGET_KINDS for c in target_columns(name)}
    assert static_columns() | target <= results_columns()
