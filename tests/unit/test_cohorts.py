"""Cohorts (issue 30): factor values from each source, labels, the start-up errors and the table's columns."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from dftscreen.check import CheckResult
from dftscreen.cohorts import (
    ALL_COHORT,
    UNASSIGNED_COHORT,
    CohortSpec,
    assign_input,
    check_cohorts,
    cohort_label,
    factor_name,
    value_text,
)
from dftscreen.columns import COHORT_COLUMN, cohort_factor_column
from dftscreen.guards import ConfigError
from dftscreen.inputs import InputFile, discover_inputs
from dftscreen.io import atomic_write_json
from dftscreen.settings import resolve_settings
from dftscreen.table import add_cohort_columns, table_from_results

FOLDERS = {"source": "folders", "folder_levels": ["model", "condition"]}


def cif_inputs(root: Path, *paths: str) -> list[InputFile]:
    """Inputs of a CIF folder holding ``paths`` (empty files: only their paths matter here)."""
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("data_x\n")
    return discover_inputs({"cif_dir": str(root)})


def table_inputs(root: Path, frame: pd.DataFrame) -> list[InputFile]:
    """Inputs of an input table (CIF texts in 'Generated CIF', ids in 'Material ID')."""
    path = root / "gen.parquet"
    frame.assign(**{"Generated CIF": "data_x\n"}).to_parquet(path)
    return discover_inputs({"cif_dir": None, "table": str(path), "table_id_column": "Material ID"})


def labels(section: dict, items: list[InputFile]) -> dict[str, str]:
    """Structure id -> cohort label, after the start-up check passed."""
    spec = check_cohorts(section, items)
    return {
        i.structure_id: cohort_label(spec, assign_input(spec, i.structure_id, i.relative_path, dict(i.extra_columns)))
        for i in items
    }


def one_sentence_error(section: dict, items: list[InputFile]) -> str:
    """The start-up error's message; it is one sentence (one line, no sentence break)."""
    with pytest.raises(ConfigError) as caught:
        check_cohorts(section, items)
    message = str(caught.value)
    assert "\n" not in message and not re.search(r"[.!?]\s+[A-Z]", message), message
    return message


# --- assignment from each source -----------------------------------------------------------------


def test_folders_name_the_sub_folder_levels(tmp_path: Path):
    items = cif_inputs(tmp_path, "crystallm/gap1.8/a.cif", "pi/gap2.0/seed1/b.cif")
    assert sorted(labels(FOLDERS, items).values()) == [
        "model=crystallm, condition=gap1.8",
        "model=pi, condition=gap2.0",  # a deeper level (seed1) is no factor
    ]
    spec = CohortSpec.from_config(FOLDERS)
    assert assign_input(spec, "x", "crystallm/x.cif") is None  # one level: no condition
    assert assign_input(spec, "x", "t.parquet row 0") is None  # a table row has no folder


def test_regex_groups_are_the_factors_ordered_ones_are_numbers_and_pooled_ones_leave_the_label(tmp_path: Path):
    items = cif_inputs(tmp_path, "pi/T0.80_seed3/a.cif", "pi/T1.0_seed4/b.cif")
    section = {
        "source": "regex",
        "regex": r"(?P<model>[^/]+)/T(?P<temperature>[0-9.]+)_seed(?P<seed>[0-9]+)/",
        "ordered": ["temperature"],
        "pool_over": ["seed"],
    }
    assert sorted(labels(section, items).values()) == ["model=pi, temperature=0.8", "model=pi, temperature=1"]
    spec = CohortSpec.from_config(section)
    assert spec.factors == ("model", "temperature", "seed")
    assert assign_input(spec, "a", "pi/T0.80_seed3/a.cif") == {"model": "pi", "temperature": 0.8, "seed": "3"}
    assert assign_input(spec, "c", "pi/other/c.cif") is None


def test_table_columns_and_an_element_of_a_list_column(tmp_path: Path):
    """CrystaLLM-pi's condition_vector: element 0 is the condition value (factor condition_vector_0)."""
    frame = pd.DataFrame(
        {"Material ID": ["s1", "s2", "s3"], "model": ["pi", "pi", "pi-ft"], "condition_vector": [[1.8], [2.0], [1.8]]}
    )
    items = table_inputs(tmp_path, frame)
    section = {
        "source": "table",
        "table_columns": ["model", "condition_vector[0]"],
        "ordered": ["condition_vector[0]"],  # the column's spelling names the factor too
        "baseline": {"model": "pi", "condition_vector_0": 1.8},
    }
    assert labels(section, items) == {
        "s1": "model=pi, condition_vector_0=1.8",
        "s2": "model=pi, condition_vector_0=2",
        "s3": "model=pi-ft, condition_vector_0=1.8",
    }
    spec = CohortSpec.from_config(section)
    assert spec.ordered == ("condition_vector_0",) and spec.baseline == {"model": "pi", "condition_vector_0": "1.8"}
    assert factor_name("condition_vector[0]") == "condition_vector_0" and factor_name("fine tune") == "fine_tune"


@pytest.mark.parametrize("key", ["structure_id", "source_file"])
def test_manifest_keyed_by_structure_id_or_source_file(tmp_path: Path, key: str):
    items = cif_inputs(tmp_path / "cifs", "a.cif", "sub/b.cif")
    keys = {"structure_id": ["a", "sub__b"], "source_file": ["a.cif", "sub/b.cif"]}[key]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"{key},model,fine tune\n{keys[0]},crystallm,none\n{keys[1]},crystallm,mp20\n")
    section = {"source": "manifest", "manifest": str(manifest), "manifest_key": key}
    assert labels(section, items) == {
        "a": "model=crystallm, fine_tune=none",
        "sub__b": "model=crystallm, fine_tune=mp20",
    }


def test_labels_pool_factors_and_without_cohorts_everything_is_all(tmp_path: Path):
    items = cif_inputs(tmp_path, "m/c/a.cif")
    assert set(labels({"source": "none"}, items).values()) == {ALL_COHORT}
    assert set(labels(None, items).values()) == {ALL_COHORT}  # no cohorts block at all
    assert set(labels({**FOLDERS, "pool_over": ["condition"]}, items).values()) == {"model=m"}
    assert set(labels({**FOLDERS, "pool_over": ["model", "condition"]}, items).values()) == {ALL_COHORT}
    assert cohort_label(CohortSpec.from_config(FOLDERS), None) == UNASSIGNED_COHORT


def test_values_are_written_one_way():
    assert [value_text(v) for v in (2.0, 2, "2", 0.8, " a ", "", None, math.nan, True)] == [
        "2", "2", "2", "0.8", "a", None, None, None, "True"
    ]


def test_unassigned_keep_puts_them_in_a_cohort_of_their_own(tmp_path: Path):
    items = cif_inputs(tmp_path, "m/c/a.cif", "loose.cif")
    expected = {"m__c__a": "model=m, condition=c", "loose": UNASSIGNED_COHORT}
    assert labels({**FOLDERS, "unassigned": "keep"}, items) == expected


# --- start-up errors, one sentence each ------------------------------------------------------------


def test_a_regex_matching_no_file_is_an_error(tmp_path: Path):
    items = cif_inputs(tmp_path, "a/x.cif")
    message = one_sentence_error({"source": "regex", "regex": "(?P<model>zzz)", "unassigned": "keep"}, items)
    assert "matches none of the 1 inputs" in message and "'a/x.cif'" in message
    assert "no named group" in one_sentence_error({"source": "regex", "regex": "a/"}, items)
    assert "not a valid regular expression" in one_sentence_error({"source": "regex", "regex": "(?P<m>"}, items)


def test_unassigned_inputs_are_counted_and_up_to_five_named(tmp_path: Path):
    items = cif_inputs(tmp_path, "m/c/a.cif", *(f"loose{n}.cif" for n in range(7)))
    message = one_sentence_error(FOLDERS, items)
    assert message.startswith("cohorts: 7 of 8 inputs get no cohort from source folders")
    assert len(re.findall(r"'loose\d\.cif'", message)) == 5 and "unassigned: keep" in message


def test_missing_table_column_and_missing_table(tmp_path: Path):
    items = table_inputs(tmp_path, pd.DataFrame({"Material ID": ["s1"], "Prompt": ["<p>"]}))
    message = one_sentence_error({"source": "table", "table_columns": ["temperature"]}, items)
    assert "'temperature', which is no column of input.table" in message and "Prompt" in message
    cifs = cif_inputs(tmp_path / "cifs", "a.cif")
    assert "no input.table" in one_sentence_error({"source": "table", "table_columns": ["model"]}, cifs)


def test_missing_manifest_file_or_key_column(tmp_path: Path):
    items = cif_inputs(tmp_path / "cifs", "a.cif")
    missing = tmp_path / "nowhere.csv"
    assert "cannot be read" in one_sentence_error({"source": "manifest", "manifest": str(missing)}, items)
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,model\na.cif,x\n")
    message = one_sentence_error({"source": "manifest", "manifest": str(manifest)}, items)
    assert "no column 'source_file'" in message and "file, model" in message
    assert "needs cohorts.manifest" in one_sentence_error({"source": "manifest"}, items)


def test_a_baseline_no_cohort_has_is_an_error(tmp_path: Path):
    items = cif_inputs(tmp_path, "a/1/x.cif", "b/2/y.cif")
    message = one_sentence_error({**FOLDERS, "baseline": {"model": "c"}}, items)
    assert "no input has model=c" in message and "a, b" in message
    message = one_sentence_error({**FOLDERS, "baseline": {"model": "a", "condition": "2"}}, items)
    assert "no input has model=a, condition=2 together" in message
    message = one_sentence_error({**FOLDERS, "baseline": {"modle": "a"}}, items)
    assert "'modle', which is no factor" in message and "did you mean 'model'" in message


def test_a_non_numeric_ordered_value_is_an_error(tmp_path: Path):
    items = cif_inputs(tmp_path, "pi/T0.8/a.cif", "pi/0.9/b.cif")
    message = one_sentence_error({**FOLDERS, "ordered": ["condition"]}, items)
    assert "'condition' needs numbers, but 1 input has other values, e.g. 'T0.8'" in message


@pytest.mark.parametrize("key", ["pool_over", "ordered"])
def test_pool_over_and_ordered_must_name_factors(tmp_path: Path, key: str):
    items = cif_inputs(tmp_path, "m/c/a.cif")
    message = one_sentence_error({**FOLDERS, key: ["seed"]}, items)
    assert f"cohorts.{key} names 'seed', which is no factor of cohorts.source folders (factors: model, condition)" in (
        message
    )
    assert "which is no factor" in one_sentence_error({key: ["seed"]}, items)  # source none has no factors


def test_a_baseline_naming_a_pooled_factor_and_folders_without_levels_are_errors(tmp_path: Path):
    items = cif_inputs(tmp_path, "m/c/a.cif")
    pooled = {**FOLDERS, "pool_over": ["model"], "baseline": {"model": "m"}}
    assert "pool_over pools" in one_sentence_error(pooled, items)
    assert "needs cohorts.folder_levels" in one_sentence_error({"source": "folders"}, items)


# --- the results table -------------------------------------------------------------------------------


def results_folder(out: Path, records: list[CheckResult]) -> Path:
    """A results folder as far as the check got (as tests/unit/test_columns_doc.py fakes one)."""
    atomic_write_json(out / "check" / "checks.json", [r.to_dict() for r in records])
    return out


def table(out: Path, cohorts: dict) -> pd.DataFrame:
    return table_from_results(
        out, False, None, run_settings=resolve_settings("test"), stable_threshold_eV_per_atom=0.1, cohorts=cohorts
    ).set_index("structure_id")


def test_the_results_table_gets_cohort_columns_after_source_file(tmp_path: Path):
    out = results_folder(
        tmp_path / "out",
        [
            CheckResult("a", "crystallm/0.5/a.cif", False, status="invalid", reason="x"),
            CheckResult("b", "pi/1.0/b.cif", False, status="invalid", reason="x"),
            CheckResult("c", "loose.cif", False, status="invalid", reason="x"),
        ],
    )
    result = table(out, {**FOLDERS, "ordered": ["condition"], "unassigned": "keep"})
    columns = list(result.reset_index().columns)
    assert columns[columns.index("source_file") + 1 :][:3] == [COHORT_COLUMN, "cohort_model", "cohort_condition"]
    assert result[COHORT_COLUMN].to_dict() == {
        "a": "model=crystallm, condition=0.5",
        "b": "model=pi, condition=1",
        "c": "unassigned",
    }
    assert result["cohort_condition"].dtype == float and math.isnan(result.loc["c", "cohort_condition"])
    assert result.loc["a", "cohort_model"] == "crystallm" and result.loc["c", "cohort_model"] is None
    assert set(table(out, None)[COHORT_COLUMN]) == {ALL_COHORT}  # no cohorts: one cohort, no factor columns
    assert not any(c.startswith("cohort_") for c in table(out, None).columns)


def test_the_table_source_reads_the_inputs_carried_columns_renamed_ones_too(tmp_path: Path):
    """An input column named like a results column is input_<name> in the table; the factor still finds it."""
    rows = [
        CheckResult("s1", "gen.parquet row 0", False, status="invalid", reason="x",
                    input_columns={"status": "pi", "condition_vector": "[1.8, 0.0]"}),
        CheckResult("s2", "gen.parquet row 1", False, status="invalid", reason="x",
                    input_columns={"status": "pi", "condition_vector": "[2.2, 0.0]"}),
    ]
    assert "input_status" in rows[0].to_dict()
    out = results_folder(tmp_path / "out", rows)
    section = {"source": "table", "table_columns": ["status", "condition_vector[0]"], "ordered": ["condition_vector_0"]}
    result = table(out, section)
    assert result[COHORT_COLUMN].tolist() == ["status=pi, condition_vector_0=1.8", "status=pi, condition_vector_0=2.2"]
    assert result[cohort_factor_column("condition_vector_0")].tolist() == [1.8, 2.2]


def test_an_input_column_named_like_a_factor_column_is_kept_apart():
    """cohort_<anything> is the workflow's: a table-input column of that name gets the prefix input_."""
    record = CheckResult("s", "t.csv row 0", False, input_columns={"cohort_model": "mine", "cohort": "c"}).to_dict()
    assert record["input_cohort_model"] == "mine" and record["input_cohort"] == "c"
    frame = pd.DataFrame([record])
    spec = CohortSpec.from_config({"source": "table", "table_columns": ["cohort_model"]})
    assert add_cohort_columns(frame, spec).loc[0, "cohort"] == "cohort_model=mine"


def test_a_manifest_gone_at_the_end_leaves_every_row_unassigned_with_a_warning(tmp_path: Path, capsys):
    out = results_folder(tmp_path / "out", [CheckResult("a", "a.cif", False, status="invalid", reason="x")])
    result = table(out, {"source": "manifest", "manifest": str(tmp_path / "gone.csv")})
    assert result[COHORT_COLUMN].tolist() == [UNASSIGNED_COHORT]
    assert "WARNING" in capsys.readouterr().err
