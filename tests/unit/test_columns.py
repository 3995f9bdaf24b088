"""dftscreen.columns, the table's one vocabulary, agrees with the records and kinds that fill it."""

from __future__ import annotations

import dataclasses

from dftscreen import columns
from dftscreen.check import CheckResult
from dftscreen.targets import TARGET_KINDS


def test_check_columns_are_the_check_records_fields_less_the_bookkeeping_ones():
    fields = [f.name for f in dataclasses.fields(CheckResult) if f.name != "input_columns"]
    assert list(columns.CHECK_COLUMNS) == [f for f in fields if f not in columns.CHECK_FIELDS_NOT_IN_TABLE]
    # A check record as the table reads it has exactly these keys (no table input here).
    record = CheckResult(structure_id="a", source_file="a.cif", valid=False).to_dict()
    assert [k for k in record if k not in columns.CHECK_FIELDS_NOT_IN_TABLE] == list(columns.CHECK_COLUMNS)


def test_every_target_kind_has_its_unit_in_the_vocabulary():
    assert {name: kind.unit for name, kind in TARGET_KINDS.items()} == columns.TARGET_UNITS
    assert columns.target_columns("band_gap") == ("target_band_gap_eV", "band_gap_error_eV", "band_gap_hit")


def test_results_columns_hold_every_named_column_and_no_input_prefix():
    names = columns.results_columns()
    assert {*columns.COLUMNS, *columns.ML_COLUMNS, *columns.STABILITY_COLUMNS, *columns.CHECK_COLUMNS} <= names
    assert {columns.ML_E_HULL_COLUMN, columns.ML_E_HULL_COLUMN_NO_PHASES, columns.SMACT_COLUMN} <= names
    assert not any(name.startswith(columns.INPUT_PREFIX) for name in names)


def test_the_vocabulary_imports_nothing_of_the_package():
    source = open(columns.__file__).read()
    assert "from dftscreen" not in source and "import dftscreen" not in source
