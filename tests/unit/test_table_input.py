"""Table input (CSV/Parquet with one CIF text per row, as CrystaLLM-pi writes it): ids, extra columns, workflow."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dftscreen.aggregate import build_table
from dftscreen.check_batch import check_and_deduplicate
from dftscreen.inputs import STRUCTURE_ID_PATTERN, discover_inputs, table_inputs, write_input_copy

from conftest import crystallm_pi_rows as _rows

SOURCES = ["TiO2/baseline/rank01_sample_0709.cif", "NaCl/baseline/rank01_sample_0709.cif"]


@pytest.fixture(params=["parquet", "csv"])
def table(request, shared_dir, tmp_path) -> Path:
    frame = _rows(shared_dir)
    path = tmp_path / f"generated.{request.param}"
    if request.param == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def test_rows_get_path_safe_unique_ids_and_extra_columns(table: Path):
    items = table_inputs(table, "Generated CIF", "Material ID")
    ids = [i.structure_id for i in items]
    assert ids[0] == "mp-1__a" and ids[3:] == ["generated__row3", "twin", "broken"]
    # A repeated id gets its row's hash; an unsafe one a readable prefix and its own hash.
    assert re.fullmatch(r"mp-1__a-[0-9a-f]{10}", ids[1]) and re.fullmatch(r"etc__x_y-[0-9a-f]{10}", ids[2])
    assert all(re.fullmatch(STRUCTURE_ID_PATTERN, sid) for sid in ids)
    assert "already used by" in items[1].id_note and "replaced by _" in items[2].id_note
    assert dict(items[0].extra_columns) == {"Material ID": "mp-1/a", "Prompt": "<prompt>", "score": 0.9}
    assert items[2].relative_path == f"{table.name} row 2"
    # Without an id column: table stem and row number.
    assert [i.structure_id for i in table_inputs(table)][:2] == ["generated__row0", "generated__row1"]


def test_missing_column_is_a_clear_error(table: Path):
    with pytest.raises(ValueError, match="'CIF' is not a column of generated.*Generated CIF"):
        table_inputs(table, "CIF")


def test_folder_and_table_together_have_unique_ids(table: Path, tmp_path: Path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    (folder / "twin.cif").write_text("data_x\n")
    items = discover_inputs({"cif_dir": str(folder), "table": str(table), "table_id_column": "Material ID"})
    ids = [i.structure_id for i in items]
    assert len(ids) == len({i.lower() for i in ids}) == 7
    assert ids[0] == "twin" and any(re.fullmatch(r"twin-[0-9a-f]{10}", sid) for sid in ids)


def test_extra_columns_reach_the_results_table(table: Path, tmp_path: Path):
    items = table_inputs(table, "Generated CIF", "Material ID")
    results = check_and_deduplicate(items)
    records = [r.to_dict() for r in results]
    by_id = {r["structure_id"]: r for r in records}
    assert by_id["broken"]["status"] == "invalid" and "no atom positions" in by_id["broken"]["reason"]
    assert by_id["twin"]["status"] == "duplicate" and by_id["twin"]["duplicate_of"] == "mp-1__a"
    assert by_id["mp-1__a"]["valid"]
    rows = build_table(records, tmp_path / "dft").set_index("structure_id")
    assert rows.loc[items[2].structure_id, "Material ID"] == "../../etc/x y"
    assert rows.loc[items[1].structure_id, "score"] == pytest.approx(0.8)
    assert rows.loc["broken", "Prompt"] == "<prompt>"
    assert "Generated CIF" not in rows.columns  # the CIF text itself is not copied into the table


def test_row_cif_written_once_and_kept_when_unchanged(table: Path, tmp_path: Path):
    item = table_inputs(table)[0]
    path = write_input_copy(item, tmp_path / "inputs")
    assert path.read_bytes() == item.content
    before = path.stat().st_mtime_ns
    write_input_copy(item, tmp_path / "inputs")
    assert path.stat().st_mtime_ns == before


def nacl_cif() -> str:
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter

    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return str(CifWriter(nacl))


def test_input_columns_named_like_results_columns_get_the_prefix_and_stay_targets(tmp_path: Path):
    """A table column named like any results column (not only a check field) is input_<name>, never a computed value."""
    import pandas as pd

    from dftscreen.io import atomic_write_json
    from dftscreen.layout import ResultsLayout
    from dftscreen.table import add_targets

    path = tmp_path / "gen.parquet"
    clashing = {"band_gap_eV": 1.8, "ml_status": "m", "novel": True, "target_band_gap_eV": 9.0, "status": "s"}
    pd.DataFrame(
        {
            "Material ID": ["good", "bad"],
            "Generated CIF": [nacl_cif(), "data_x\nnot a cif"],
            "Prompt": ["<p>", "<p>"],
            **{name: [value, value] for name, value in clashing.items()},
        }
    ).to_parquet(path)
    records = [r.to_dict() for r in check_and_deduplicate(table_inputs(path, id_column="Material ID"))]
    for name, value in clashing.items():
        assert records[1][f"input_{name}"] == value, name
    assert "band_gap_eV" not in records[1] and "ml_status" not in records[1] and "novel" not in records[1]
    assert records[1]["Prompt"] == "<p>"  # no clash: its own name

    layout = ResultsLayout.of(tmp_path / "out")
    atomic_write_json(layout.relax_record("good"), {"status": "relaxed", "converged": True, "relaxed_cif": "r.cif"})
    atomic_write_json(layout.properties_record("good"), {"status": "done", "band_gap_eV": 4.9})
    table = build_table(records, layout.dft_dir).set_index("structure_id", drop=False)
    assert table.loc["good", "band_gap_eV"] == pytest.approx(4.9) and pd.isna(table.loc["bad", "band_gap_eV"])
    assert (table["input_band_gap_eV"] == 1.8).all()
    # The target names the input column by its own name and finds input_band_gap_eV.
    config = {"properties": {"band_gap": {"source_column": "band_gap_eV", "tolerance": 0.3}}}
    out = add_targets(table, config).set_index("structure_id")
    assert out["target_band_gap_eV"].tolist() == [1.8, 1.8]
    assert out.loc["good", "band_gap_error_eV"] == pytest.approx(3.1) and out.loc["good", "band_gap_hit"] == False  # noqa: E712
    assert pd.isna(out.loc["bad", "band_gap_hit"])  # invalid: no computed gap, not a hit
    # Without such an input column the computed column is no target: an error, not error 0 and a hit
    # (the table itself is still written, without target columns: the error goes to stderr).
    from dftscreen.targets import add_target_columns

    with pytest.raises(ValueError, match="computed column"):
        add_target_columns(table.drop(columns=["input_band_gap_eV"]), config["properties"])
    assert "target_band_gap_eV" not in add_targets(table.drop(columns=["input_band_gap_eV"]), config).columns


def test_crystallm_pi_condition_vector_element_is_the_target(tmp_path: Path):
    """The property CrystaLLM-pi conditioned on is in the list column condition_vector: condition_vector[0]."""
    import numpy as np
    import pandas as pd

    from dftscreen.targets import add_target_columns

    path = tmp_path / "crystallm_pi_gen.parquet"
    pd.DataFrame(
        {"Material ID": ["s1"], "Generated CIF": [nacl_cif()], "condition_vector": [np.array([1.8, 0.0])]}
    ).to_parquet(path)
    record = check_and_deduplicate(table_inputs(path, id_column="Material ID"))[0].to_dict()
    table = pd.DataFrame([{**record, "band_gap_eV": 1.7}])
    out = add_target_columns(table, {"band_gap": {"source_column": "condition_vector[0]"}})
    assert out.loc[0, "target_band_gap_eV"] == 1.8 and out.loc[0, "band_gap_hit"] == True  # noqa: E712
    with pytest.raises(ValueError, match=r"condition_vector.*\[1\.8, 0\.0\].*condition_vector\[0\]"):
        add_target_columns(table, {"band_gap": {"source_column": "condition_vector"}})
