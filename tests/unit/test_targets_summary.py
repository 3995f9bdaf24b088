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


def test_too_large_structures_count_as_valid_and_unique_like_the_funnel():
    # Sound structures too large for DFT passed the checks (dft_ready): valid, and unique when not duplicates.
    table = pd.DataFrame({"structure_id": ["a", "b", "c", "d"], "status": ["ok", "too_large", "too_large", "invalid"],
                          "n_sites": [2, 400, 500, 2], "dft_ready": [True, True, True, False]})
    summary = summarize(table)
    assert summary["valid"] == {"count": 3, "rate": 0.75}
    assert summary["unique"] == {"count": 3, "rate": 0.75}
    funnel = {stage["stage"]: stage["count"] for stage in summary["funnel"]}
    assert funnel["dft_ready"] == summary["valid"]["count"] and funnel["unique"] == summary["unique"]["count"]
    # Without a dft_ready column the funnel counts the same statuses as valid.
    funnel = {stage["stage"]: stage["count"] for stage in summarize(table.drop(columns="dft_ready"))["funnel"]}
    assert funnel["dft_ready"] == 3
