"""Start-up guards: a wrong configuration stops the run in a few clear lines."""

from __future__ import annotations

import pytest

from dftscreen.guards import (
    ConfigError,
    check_output_dir,
    check_structure_overrides,
    check_target_names,
    input_manifest,
    short_schema_error,
)
from dftscreen.targets import TARGET_KINDS


def test_schema_error_in_a_few_lines():
    import jsonschema
    from snakemake.exceptions import WorkflowError

    schema = {"type": "object", "properties": {"check": {"type": "object", "properties": {
        "max_atoms": {"type": "integer", "description": "most atoms in a full cell"}}}}}
    try:
        try:
            jsonschema.validate({"check": {"max_atoms": "many"}}, schema)
        except jsonschema.ValidationError as exc:
            raise WorkflowError("Error validating config file.", exc) from exc  # as snakemake.utils.validate does
    except WorkflowError as wrapped:
        message = short_schema_error(wrapped)
    assert message.splitlines()[0] == "config error at check.max_atoms: 'many' is not of type 'integer'"
    assert "most atoms in a full cell" in message and len(message.splitlines()) <= 4


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_output_dir_is_refused(value):
    with pytest.raises(ConfigError, match="output_dir is empty"):
        check_output_dir(value)


def test_unknown_override_ids_and_target_names_are_named_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"'NaCl_rank01'.*did you mean 'NaCl__rank01'"):
        check_structure_overrides({"NaCl_rank01": {}}, ["NaCl__rank01", "TiO2"])
    check_structure_overrides({"TiO2": {}}, ["TiO2"])
    with pytest.raises(ConfigError, match=r"'bandgap'.*did you mean 'band_gap'"):
        check_target_names({"bandgap": {}}, TARGET_KINDS)
    check_target_names({"band_gap": {}}, TARGET_KINDS)


def test_manifest_changes_when_an_input_changes(tmp_path):
    cif = tmp_path / "a.cif"
    cif.write_text("data_a\n")
    before = input_manifest([cif])
    assert input_manifest([cif]) == before
    cif.write_text("data_a changed\n")
    assert input_manifest([cif]) != before
