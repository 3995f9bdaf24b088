import pandas as pd
import pytest

from dftscreen.summary import summarize
from dftscreen.targets import add_target_columns, read_target_file


def results() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "structure_id": ["a", "b", "c", "d", "e"],
            "source_file": ["a.cif", "b.cif", "c.cif", "d.cif", "e.cif"],
            "status": ["ok", "ok", "duplicate", "invalid", "failed"],
            "band_gap_eV": [1.7, 0.0, 1.7, None, None],
            "e_above_hull_vs_generated_only_eV_per_atom": [0.0, 0.3, 0.0, None, None],
            "relaxed_matches_generated": [True, False, True, None, None],
        }
    )


def test_targets_from_file_give_error_and_hit(tmp_path):
    path = tmp_path / "targets.csv"
    pd.DataFrame({"source_file": ["a.cif", "b.cif", "d.cif"], "gap": [1.8, 1.8, 2.0]}).to_csv(path, index=False)
    targets = read_target_file(path, "source_file")
    table = add_target_columns(
        results(), {"band_gap": {"source_column": "gap", "tolerance": 0.2}}, targets, "source_file"
    )
    assert table["target_band_gap_eV"].tolist()[:2] == [1.8, 1.8]
    assert table["band_gap_error_eV"].tolist()[:2] == pytest.approx([-0.1, -1.8])
    assert table["band_gap_hit"].tolist()[:2] == [True, False]
    assert pd.isna(table.loc[3, "band_gap_hit"])  # invalid: no computed value, not a miss


def test_targets_from_table_columns_and_unknown_names():
    table = results().assign(e_above_hull=[0.0, 0.0, 0.0, 0.0, 0.0])
    out = add_target_columns(table, {"e_above_hull": {}})
    assert out["e_above_hull_hit"].tolist()[:2] == [True, False]  # default tolerance 0.05 eV/atom
    with pytest.raises(KeyError, match="known targets"):
        add_target_columns(table, {"bandgap": {}})
    with pytest.raises(ValueError, match="no column 'structure_id'"):
        import io

        read_target_file(io.StringIO("x,y\n1,2\n"), "structure_id")


def test_summary_rates():
    table = add_target_columns(results().assign(band_gap=[1.8, 1.8, 1.8, 1.8, 1.8]), {"band_gap": {"tolerance": 0.2}})
    summary = summarize(table, stable_threshold_eV_per_atom=0.1)
    assert summary["n_inputs"] == 5
    assert summary["valid"] == {"count": 4, "rate": 0.8}
    assert summary["unique"]["count"] == 3
    assert summary["relaxed_ok"]["count"] == 2
    assert summary["stable"]["count"] == 1 and summary["stable_and_unique"]["count"] == 1
    assert summary["relaxed_into_different_structure"]["count"] == 1
    band_gap = summary["targets"]["band_gap"]
    # a: |1.7-1.8|, b: |0-1.8|, c (duplicate shows a's gap): |1.7-1.8|
    assert band_gap["n_compared"] == 3
    assert band_gap["mean_absolute_error"] == pytest.approx((0.1 + 1.8 + 0.1) / 3)
    assert band_gap["hit_rate"] == pytest.approx(2 / 3)


def test_numeric_looking_ids_in_the_targets_file_match_as_text(tmp_path):
    """Ids made from 001.cif and 17.cif are '001' and '17': the targets file's ids are read as that text."""
    path = tmp_path / "targets.csv"
    path.write_text("structure_id,band_gap\n001,1.8\n17,2.0\n")
    table = pd.DataFrame({"structure_id": ["001", "17"], "status": ["ok", "ok"], "band_gap_eV": [1.7, 0.4]})
    out = add_target_columns(table, {"band_gap": {}}, read_target_file(path, "structure_id"))
    assert out["target_band_gap_eV"].tolist() == [1.8, 2.0]
    assert out["band_gap_hit"].tolist() == [True, False]


def test_targets_file_matching_no_or_only_some_structures_is_reported(tmp_path):
    path = tmp_path / "targets.csv"
    path.write_text("structure_id,band_gap\n1,1.8\n017,2.0\n")
    targets = read_target_file(path, "structure_id")
    table = pd.DataFrame({"structure_id": ["001", "17"], "status": ["ok", "ok"], "band_gap_eV": [1.7, 0.4]})
    with pytest.raises(ValueError, match=r"none of the 2 structures has a row.*'001', '17'.*'1', '017'"):
        add_target_columns(table, {"band_gap": {}}, targets)
    path.write_text("structure_id,band_gap\n001,1.8\n")
    with pytest.warns(UserWarning, match=r"1 of 2 structures have no row in the targets file.*'17'"):
        out = add_target_columns(table, {"band_gap": {}}, read_target_file(path, "structure_id"))
    assert out["target_band_gap_eV"].tolist()[0] == 1.8 and pd.isna(out["band_gap_hit"].tolist()[1])


def test_an_element_of_a_list_column_is_a_target_source():
    """CrystaLLM-pi's condition_vector: JSON text as a table input stores it, or a list/array."""
    import numpy as np

    cells = ["[1.8]", [1.8, 0.0], np.array([1.6]), None, "[NaN]"]
    config = {"band_gap": {"source_column": "condition_vector[0]"}}
    out = add_target_columns(results().assign(condition_vector=cells), config)
    assert out["target_band_gap_eV"].tolist()[:3] == [1.8, 1.8, 1.6]
    assert out["target_band_gap_eV"].isna().tolist()[3:] == [True, True]  # empty cells: no target, no error
    assert out["band_gap_hit"].tolist()[:2] == [True, False]


def test_a_target_column_that_is_not_numbers_is_an_error_naming_it():
    lists = r"'condition_vector': 1 of 5 values are not numbers, e\.g\. '\[1\.8\]'.*condition_vector\[0\]"
    with pytest.raises(ValueError, match=lists):
        add_target_columns(
            results().assign(condition_vector=["[1.8]", None, None, None, None]),
            {"band_gap": {"source_column": "condition_vector"}},
        )
    with pytest.raises(ValueError, match=r"'gap': 2 of 5 values are not numbers, e\.g\. 'high'"):
        gaps = ["high", "1.8", "", "NaN", "1,8"]
        add_target_columns(results().assign(gap=gaps), {"band_gap": {"source_column": "gap"}})
    with pytest.raises(ValueError, match=r"'cv\[1\]'.*not lists with an element \[1\]"):
        add_target_columns(results().assign(cv=["[1.8]"] * 5), {"band_gap": {"source_column": "cv[1]"}})
    with pytest.warns(UserWarning, match="no column 'gap'"):
        out = add_target_columns(results(), {"band_gap": {"source_column": "gap"}})
    assert "target_band_gap_eV" not in out.columns


def test_a_targets_file_is_checked_before_any_job_and_never_costs_the_table(tmp_path, capsys):
    """At start-up: no input with a row, or a target column of text, stops the run with the reason.
    At the end: the same problem leaves the table without target columns, every row kept."""
    from dftscreen.table import add_targets
    from dftscreen.targets import check_targets_file

    path = tmp_path / "targets.csv"
    path.write_text("structure_id,band_gap\nother,1.5\n")
    config = {"file": str(path), "id_column": "structure_id", "properties": {"band_gap": {}}}
    with pytest.raises(ValueError, match="none of the 2 structures has a row in the targets file"):
        check_targets_file(config, ["a", "b"])
    path.write_text("structure_id,band_gap\na,wide\nb,1.5\n")
    with pytest.raises(ValueError, match="band_gap"):
        check_targets_file(config, ["a", "b"])
    path.write_text("structure_id,band_gap\na,1.0\n")
    check_targets_file(config, ["a", "b"])  # one input without a row: reported per row later, not fatal
    check_targets_file({"file": None, "properties": {}}, [])

    path.write_text("structure_id,band_gap\nother,1.5\n")
    table = pd.DataFrame({"structure_id": ["a", "b"], "band_gap_eV": [1.0, 2.0]})
    out = add_targets(table, config)
    assert list(out["structure_id"]) == ["a", "b"] and "target_band_gap_eV" not in out.columns
    assert "no target columns in the results table" in capsys.readouterr().err


def test_too_large_structures_count_as_valid_and_unique_like_the_funnel():
    # Sound structures too large for DFT passed the checks (dft_ready): valid, and unique when not duplicates.
    table = pd.DataFrame({"structure_id": ["a", "b", "c", "d"], "status": ["ok", "too_large", "too_large", "invalid"],
                          "n_sites": [2, 400, 500, 2], "dft_ready": [True, True, True, False]})
    summary = summarize(table, stable_threshold_eV_per_atom=0.1)
    assert summary["valid"] == {"count": 3, "rate": 0.75}
    assert summary["unique"] == {"count": 3, "rate": 0.75}
    funnel = {stage["stage"]: stage["count"] for stage in summary["funnel"]}
    assert funnel["dft_ready"] == summary["valid"]["count"] and funnel["unique"] == summary["unique"]["count"]
    # Without a dft_ready column the funnel counts the same statuses as valid.
    summary = summarize(table.drop(columns="dft_ready"), stable_threshold_eV_per_atom=0.1)
    funnel = {stage["stage"]: stage["count"] for stage in summary["funnel"]}
    assert funnel["dft_ready"] == 3


def test_a_relaxed_structure_whose_properties_failed_still_counts_as_stable():
    """Stability needs the relaxation only; a relaxation that did not converge does not count."""
    table = pd.DataFrame({
        "structure_id": ["ok", "props_failed", "relax_unconverged"],
        "source_file": ["ok.cif", "p.cif", "r.cif"],
        "status": ["ok", "failed", "not_converged"],
        "relax_converged": [True, True, False],
        "e_above_hull_eV_per_atom": [0.02, 0.01, None],
    })
    summary = summarize(table, stable_threshold_eV_per_atom=0.1)
    assert summary["stable"]["count"] == 2
    assert summary["relaxed_ok"]["count"] == 1  # fully finished rows only
    funnel = {step["stage"]: step["count"] for step in summary["funnel"]}
    assert funnel["relaxed"] == 2 and funnel["stable"] == 2
