"""The start-up check of the known sets (issue 28, N3): path, format and columns, in one sentence, nothing written.

workflow/rules/common.smk calls :func:`dftscreen.known.check_known_sets` on
``config["known_materials"]`` before any job is planned; here it is called directly.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pandas as pd
import pytest

from dftscreen.guards import ConfigError
from dftscreen.known import check_known_sets, known_set_files

from conftest import REPO, TEST_DATA

FIXTURE = TEST_DATA / "known" / "known_NaCl_TiO_LiFePO.json.gz"
#: The schema's defaults of a known set (workflow/schemas/config.schema.yaml).
DEFAULTS = {"path": None, "cif_column": "cif", "id_column": "material_id", "formula_column": None,
            "energy_per_atom_column": None, "e_above_hull_column": None}


def known(database: dict | None = None, training: dict | None = None) -> dict:
    """A config section ``known_materials`` with schema defaults filled in."""
    return {"database": {**DEFAULTS, **(database or {})}, "training": {**DEFAULTS, **(training or {})},
            "competing_phases": {"enabled": True}}


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def sets(tmp_path: Path) -> Path:
    """A folder with one known set of every format: known.json.gz, table.csv, table.parquet, cifs/."""
    shutil.copy(FIXTURE, tmp_path / "known.json.gz")
    frame = pd.DataFrame({"material_id": ["a"], "cif": ["data_x\n"], "e_form": [-1.0]})
    frame.to_csv(tmp_path / "table.csv", index=False)
    frame.to_parquet(tmp_path / "table.parquet")
    (tmp_path / "cifs" / "sub").mkdir(parents=True)
    (tmp_path / "cifs" / "sub" / "NaCl.CIF").write_text("data_x\n")  # not read at start-up: only found
    return tmp_path


def refusal(config: dict, folder: Path) -> str:
    """The ConfigError message of ``check_known_sets(config)``, checked to be one line that wrote nothing."""
    before = files_under(folder)
    with pytest.raises(ConfigError) as caught:
        check_known_sets(config)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    assert caught.value.__cause__ is None
    assert files_under(folder) == before
    return message


def test_every_format_that_is_right_passes_and_the_config_is_returned(sets: Path):
    for database, training in [
        ({"path": str(sets / "known.json.gz")}, {"path": str(sets / "table.csv"), "energy_per_atom_column": "e_form"}),
        ({"path": str(sets / "table.parquet"), "id_column": None}, {"path": str(sets / "cifs")}),
        ({"path": None}, {"path": None}),
    ]:
        config = known(database, training)
        assert check_known_sets(config) is config
    assert known_set_files({"path": str(sets / "cifs")}) == [str(sets / "cifs" / "sub" / "NaCl.CIF")]
    assert known_set_files({"path": str(sets / "known.json.gz")}) == [str(sets / "known.json.gz")]
    assert known_set_files({"path": None}) == []


def test_a_missing_path_is_refused_naming_the_key(sets: Path, monkeypatch):
    monkeypatch.chdir(sets)
    message = refusal(known(training={"path": "data/finetune.parquet"}), sets)
    assert message.startswith("known_materials.training.path 'data/finetune.parquet' does not exist")
    assert f"read from the run folder {sets}" in message and "path: null" in message


def test_an_unknown_format_is_refused(sets: Path):
    (sets / "known.txt").write_text("mp-1\n")
    message = refusal(known({"path": str(sets / "known.txt")}), sets)
    assert message.startswith(f"known_materials.database.path '{sets / 'known.txt'}' is of no known-set format")
    assert ".json.gz" in message and ".parquet" in message


@pytest.mark.parametrize(("table", "setting", "column"), [
    ("table.csv", "cif_column", "structure"),
    ("table.parquet", "cif_column", "structure"),
    ("table.csv", "id_column", "mp_id"),
    ("table.parquet", "energy_per_atom_column", "energy"),
    ("table.csv", "e_above_hull_column", "e_hull"),
    ("table.csv", "formula_column", "formula"),
])
def test_a_table_without_a_configured_column_is_refused(sets: Path, table: str, setting: str, column: str):
    message = refusal(known({"path": str(sets / table), setting: column}), sets)
    assert message.startswith(f"known_materials.database.{setting} is '{column}', but the table "
                              f"'{sets / table}' has no such column (its columns: material_id, cif, e_form)")


def test_the_default_id_column_missing_from_a_table_says_how_to_number_rows(sets: Path):
    pd.DataFrame({"cif": ["data_x\n"]}).to_csv(sets / "no_ids.csv", index=False)
    message = refusal(known(training={"path": str(sets / "no_ids.csv")}), sets)
    assert "known_materials.training.id_column is 'material_id'" in message
    assert message.endswith("id_column: null to number the rows")


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("known.json.gz", b"[{}]", "cannot be read as gzip-compressed JSON"),
    ("known.json", b"mp-1,NaCl\n", "is not JSON of ComputedStructureEntry dicts (it starts with 'mp-1,NaCl"),
    ("known.json", b"\xff\xfe\x00garbage", "cannot be read as JSON"),
    ("table.csv", b"", "cannot be read as a CSV table"),
    ("table.parquet", b"not parquet", "cannot be read as a Parquet table"),
])
def test_a_file_that_is_not_what_its_name_says_is_refused(tmp_path: Path, name: str, content: bytes, expected: str):
    (tmp_path / name).write_bytes(content)
    message = refusal(known({"path": str(tmp_path / name)}), tmp_path)
    assert message.startswith(f"known_materials.database.path '{tmp_path / name}' {expected}")


def test_a_folder_without_cifs_is_refused(tmp_path: Path):
    (tmp_path / "cifs" / ".hidden").mkdir(parents=True)
    (tmp_path / "cifs" / ".hidden" / "x.cif").write_text("data_x\n")
    (tmp_path / "cifs" / "notes.txt").write_text("")
    message = refusal(known({"path": str(tmp_path / "cifs")}), tmp_path)
    assert message.startswith(f"known_materials.database.path '{tmp_path / 'cifs'}' is a folder without any .cif")


def test_a_gzip_json_that_is_fine_is_only_opened_not_parsed(tmp_path: Path):
    """Start-up reads a JSON's first characters only: a file truncated after them passes (the job says the rest)."""
    with gzip.open(tmp_path / "cut.json.gz", "wb") as handle:
        handle.write(b'[{"entry_id": "mp-1", "structure": ')
    check_known_sets(known({"path": str(tmp_path / "cut.json.gz")}))


def test_the_workflow_checks_the_known_sets_at_start_up():
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert 'KNOWN = check_known_sets(config["known_materials"])' in common
