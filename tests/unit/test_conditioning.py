"""dftscreen.conditioning: computed against requested per condition value, the baseline in the same
target window and the hit-rate lift, on synthetic tables with answers counted by hand (issue 30, item 6)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from dftscreen import cohort_figures
from dftscreen.cohorts import CohortSpec
from dftscreen.conditioning import (
    BASELINE_COLUMNS,
    CONDITIONING_DEFINITIONS,
    ML,
    RATE_COLUMNS,
    cohort_baselines,
    computed_columns,
    condition_rows,
    conditioning_data,
    conditioning_points,
)

from conftest import REPO

NAN = math.nan
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BASELINE = {"source": "folders", "folder_levels": ["model"], "baseline": {"model": "base"}}
GAP = {"properties": {"band_gap": {"tolerance": 0.3}}}


def gap_table() -> pd.DataFrame:
    """model=pi asked for a 1.0 eV gap 10 times: 8 computed within 0.3 eV (one far off, one not computed);
    model=base asked nothing: 5 of its 20 inputs land in [0.7, 1.3] (two have no value)."""
    pi = [1.0, 1.1, 0.9, 1.2, 0.8, 1.25, 0.75, 1.05, 2.0, NAN]
    base = [1.0, 0.8, 1.2, 0.95, 1.29, *[2.0] * 10, *[0.1] * 3, NAN, NAN]
    n_pi, n_base = len(pi), len(base)
    return pd.DataFrame({
        "structure_id": [f"p{i}" for i in range(n_pi)] + [f"b{i}" for i in range(n_base)],
        "source_file": [f"pi/p{i}.cif" for i in range(n_pi)] + [f"base/b{i}.cif" for i in range(n_base)],
        "status": "ok",
        "dft_ready": True,
        "cohort": ["model=pi"] * n_pi + ["model=base"] * n_base,
        "cohort_model": ["pi"] * n_pi + ["base"] * n_base,
        "band_gap_eV": pi + base,
        "target_band_gap_eV": [1.0] * n_pi + [NAN] * n_base,
    })  # fmt: skip


def only(found, name="band_gap"):
    (match,) = [p for p in found if p.name == name]
    return match


def test_hit_rate_window_rate_and_lift_against_statsmodels():
    found = only(conditioning_data(gap_table(), GAP, CohortSpec.from_config(BASELINE)))
    assert (found.unit, found.tolerance, found.dft_column, found.ml_column) == ("eV", 0.3, "band_gap_eV", None)
    (row,) = found.rows.to_dict("records")  # the baseline asked nothing: no row of its own
    assert (row["cohort"], row["condition_value"], row["n"], row["n_computed"], row["hits"]) == (
        "model=pi", 1.0, 10, 9, 8)  # fmt: skip
    assert row["hit_rate"] == pytest.approx(0.8)
    assert (row["hit_low"], row["hit_high"]) == pytest.approx(proportion_confint(8, 10, method="wilson"))
    assert row["baseline"] == "model=base"
    assert (row["baseline_n"], row["baseline_n_computed"], row["baseline_in_window"]) == (20, 18, 5)
    assert row["baseline_window_rate"] == pytest.approx(0.25)
    assert (row["baseline_window_low"], row["baseline_window_high"]) == pytest.approx(
        proportion_confint(5, 20, method="wilson"))  # fmt: skip
    assert row["lift"] == pytest.approx(0.55)
    newcombe = confint_proportions_2indep(8, 10, 5, 20, method="newcomb", compare="diff")
    assert (row["lift_low"], row["lift_high"]) == pytest.approx(newcombe)
    # Newcombe's hybrid score interval by hand (Newcombe 1998, method 10) from the two Wilson intervals.
    (l1, u1), (l2, u2) = proportion_confint(8, 10, method="wilson"), proportion_confint(5, 20, method="wilson")
    low = 0.55 - math.sqrt((0.8 - l1) ** 2 + (u2 - 0.25) ** 2)
    high = 0.55 + math.sqrt((u1 - 0.8) ** 2 + (0.25 - l2) ** 2)
    assert (row["lift_low"], row["lift_high"]) == pytest.approx((low, high))
    assert row["lift_ratio"] == pytest.approx(3.2)
    assert list(found.rows.columns) == RATE_COLUMNS + BASELINE_COLUMNS


def test_alpha_comes_from_the_cohorts_section():
    spec = CohortSpec.from_config({**BASELINE, "alpha": 0.1})
    row = only(conditioning_data(gap_table(), GAP, spec)).rows.iloc[0]
    assert (row["hit_low"], row["hit_high"]) == pytest.approx(proportion_confint(8, 10, alpha=0.1, method="wilson"))
    newcombe = confint_proportions_2indep(8, 10, 5, 20, method="newcomb", compare="diff", alpha=0.1)
    assert (row["lift_low"], row["lift_high"]) == pytest.approx(newcombe)


def test_window_edges_count_on_both_sides():
    """[t - tolerance, t + tolerance] is closed: values exactly on an edge (exact in binary) are hits."""
    points = pd.DataFrame({"cohort": ["a"] * 4 + ["b"] * 4, "requested": [1.0] * 4 + [NAN] * 4,
                           "computed": [0.75, 1.25, 0.7499, 1.2501, 0.75, 1.25, 0.5, 2.0],
                           "source": "DFT"})  # fmt: skip
    rows = condition_rows(points, 0.25, baselines={"a": "b", "b": None})
    assert rows[["hits", "baseline_in_window"]].iloc[0].tolist() == [2, 2]


def test_several_condition_values_of_one_cohort_are_rows_of_their_own():
    table = gap_table()
    table.loc[5:9, "target_band_gap_eV"] = 2.0  # p5..p9 asked for 2.0 eV: 1.25, 0.75, 1.05, 2.0, NaN
    rows = only(conditioning_data(table, GAP, CohortSpec.from_config(BASELINE))).rows
    assert rows["condition_value"].tolist() == [1.0, 2.0]
    assert rows["n"].tolist() == [5, 5] and rows["hits"].tolist() == [5, 1]
    # The baseline's window moves with the condition: 5 of 20 at 1.0 eV, the ten 2.0 eV values at 2.0 eV.
    assert rows["baseline_in_window"].tolist() == [5, 10]
    assert rows["lift"].tolist() == pytest.approx([1.0 - 0.25, 0.2 - 0.5])


def ehull_table() -> pd.DataFrame:
    """Asked for E_hull 0: DFT values where DFT ran, the ML model's elsewhere; the baseline the same way."""
    return pd.DataFrame({
        "cohort": ["model=pi"] * 6 + ["model=base"] * 4,
        "cohort_model": ["pi"] * 6 + ["base"] * 4,
        "target_e_above_hull_eV_per_atom": [0.0] * 6 + [NAN] * 4,
        "e_above_hull_eV_per_atom": [0.01, 0.2, NAN, NAN, NAN, 0.04, 0.0, NAN, 0.3, NAN],
        "ml_e_above_hull_eV_per_atom": [0.5, 0.5, 0.02, 0.3, NAN, NAN, 0.3, 0.03, 0.0, NAN],
        "ml_e_above_hull_vs_generated_only_eV_per_atom": 0.0,  # another hull: never used for this column
        "band_gap_eV": NAN,
        "target_band_gap_eV": [1.0] * 6 + [NAN] * 4,
    })  # fmt: skip


def test_ml_values_stand_in_where_dft_has_none_and_are_labelled():
    table = ehull_table()
    points = conditioning_points(table, "e_above_hull")
    assert points["source"].tolist() == ["DFT", "DFT", ML, ML, None, "DFT", "DFT", ML, "DFT", None]
    assert points["computed"].tolist()[:6] == pytest.approx([0.01, 0.2, 0.02, 0.3, NAN, 0.04], nan_ok=True)
    spec = CohortSpec.from_config(BASELINE)
    targets = {"properties": {"e_above_hull": None, "band_gap": {"tolerance": 0.3}}}
    found = conditioning_data(table, targets, spec)
    ehull = only(found, "e_above_hull")
    assert (ehull.tolerance, ehull.ml_column) == (0.05, "ml_e_above_hull_eV_per_atom")  # the default tolerance
    row = ehull.rows.iloc[0]
    assert (row["n"], row["n_computed"], row["n_ml"], row["hits"], row["hits_ml"]) == (6, 5, 2, 3, 1)
    assert (row["baseline_n"], row["baseline_in_window"], row["baseline_in_window_ml"]) == (4, 2, 1)
    # A band gap has no ML value: nothing computed, every input a miss, the figure says so.
    gap = only(found, "band_gap")
    assert gap.ml_column is None and gap.rows.iloc[0][["n", "n_computed", "hits"]].tolist() == [6, 0, 0]


def test_the_ml_column_is_the_dft_columns_counterpart():
    columns = ["e_above_hull_vs_generated_only_eV_per_atom", "ml_e_above_hull_eV_per_atom"]
    assert computed_columns(columns, "e_above_hull") == ("e_above_hull_vs_generated_only_eV_per_atom", None)
    assert computed_columns(["ml_e_above_hull_eV_per_atom"], "e_above_hull") == (None, "ml_e_above_hull_eV_per_atom")
    assert computed_columns(["ml_formation_energy_eV_per_atom"], "formation_energy") == (
        None, "ml_formation_energy_eV_per_atom")  # fmt: skip
    assert computed_columns(["band_gap_eV"], "band_gap") == ("band_gap_eV", None)


@pytest.mark.parametrize("cohorts", [None, {"source": "folders", "folder_levels": ["model"]}])
def test_no_baseline_no_lift_columns(cohorts):
    table = gap_table() if cohorts else gap_table().drop(columns=["cohort", "cohort_model"])
    rows = only(conditioning_data(table, GAP, CohortSpec.from_config(cohorts))).rows
    assert list(rows.columns) == RATE_COLUMNS
    assert rows["cohort"].iloc[0] == ("model=pi" if cohorts else "all") and rows["hits"].iloc[0] == 8


def test_an_empty_baseline_cohort_gives_no_lift_and_a_condition_without_values_gives_misses():
    """The baseline cohort has no input (a category of the cohort column only); model=pi's inputs at
    1.0 eV have no computed value yet: they count, as misses."""
    table = gap_table().iloc[:10].copy()
    table["band_gap_eV"] = NAN
    table["cohort"] = pd.Categorical(table["cohort"], categories=["model=base", "model=pi"])
    rows = only(conditioning_data(table, GAP, CohortSpec.from_config(BASELINE))).rows
    row = rows.iloc[0]
    assert (row["n"], row["n_computed"], row["hits"], row["hit_rate"]) == (10, 0, 0, 0.0)
    assert (row["hit_low"], row["hit_high"]) == pytest.approx(proportion_confint(0, 10, method="wilson"))
    assert row["baseline"] == "model=base" and row["baseline_n"] == 0
    assert math.isnan(row["baseline_window_rate"]) and math.isnan(row["lift"]) and math.isnan(row["lift_ratio"])
    assert (row["baseline_window_low"], row["baseline_window_high"]) == (0.0, 1.0)


def test_a_baseline_naming_one_factor_is_the_baseline_model_at_the_same_condition():
    spec = CohortSpec.from_config({"source": "folders", "folder_levels": ["model", "seed"], "baseline": {"model": "b"}})
    table = pd.DataFrame({"cohort": ["model=a, seed=1", "model=b, seed=1", "model=a, seed=2"],
                          "cohort_model": ["a", "b", "a"], "cohort_seed": ["1", "1", "2"]})  # fmt: skip
    expected = {"model=a, seed=1": "model=b, seed=1", "model=b, seed=1": None, "model=a, seed=2": "model=b, seed=2"}
    assert cohort_baselines(table, spec) == expected


def test_no_requested_value_no_conditioning():
    table = gap_table().assign(target_band_gap_eV=NAN)
    assert conditioning_data(table, GAP, CohortSpec.from_config(BASELINE)) == []
    assert conditioning_data(gap_table(), None, CohortSpec.from_config(BASELINE)) == []


def test_write_run_cohorts_adds_conditioning_to_cohorts_json_and_the_summary(tmp_path: Path):
    from dftscreen.cohort_table import write_run_cohorts

    summary = write_run_cohorts(gap_table(), BASELINE, tmp_path / "c.csv", tmp_path / "c.json", targets_config=GAP)
    data = json.loads((tmp_path / "c.json").read_text())
    entry = data["conditioning"]["properties"]["band_gap"]
    assert data["conditioning"]["definitions"] == CONDITIONING_DEFINITIONS and entry["unit"] == "eV"
    (row,) = entry["rows"]
    assert row["hits"] == 8 and row["baseline_in_window"] == 5 and row["lift"] == pytest.approx(0.55)
    compact = summary["conditioning"]["band_gap"]
    assert compact["n_rows"] == 1 and compact["rows"][0]["lift"] == pytest.approx(0.55)
    assert set(compact["rows"][0]) < set(row)
    json.dumps(summary, allow_nan=False)  # no NaN reaches summary.json
    # Without targets: no conditioning anywhere.
    plain = write_run_cohorts(gap_table(), BASELINE, tmp_path / "d.csv", tmp_path / "d.json")
    assert "conditioning" not in plain and "conditioning" not in json.loads((tmp_path / "d.json").read_text())


def drawn(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 2000


@pytest.mark.parametrize("case", ["baseline", "no baseline", "ml", "nothing computed", "no target"])
def test_the_conditioning_figure_is_a_png_with_or_without_data(tmp_path: Path, case: str):
    table, targets, cohorts, name = gap_table(), GAP, BASELINE, "band_gap"
    if case == "no baseline":
        cohorts = {"source": "folders", "folder_levels": ["model"]}
    elif case == "ml":
        table, targets, name = ehull_table(), {"properties": {"e_above_hull": None}}, "e_above_hull"
    elif case == "nothing computed":
        table = table.assign(band_gap_eV=NAN)
    found = conditioning_data(table, targets, CohortSpec.from_config(cohorts))
    points = conditioning_points(table, name)
    if case == "no target":
        points, rows = points.assign(requested=NAN), pd.DataFrame()
    else:
        rows = only(found, name).rows
    cohort_figures.conditioning_plot(points, rows, name, "eV", 0.3, tmp_path / "c.png")
    assert drawn(tmp_path / "c.png")


def test_figure_from_cohorts_json_rows(tmp_path: Path):
    """The report draws from cohorts.json's rows (JSON: None for NaN) and the table's points."""
    found = only(conditioning_data(gap_table(), GAP, CohortSpec.from_config(BASELINE)))
    rows = pd.DataFrame(json.loads(json.dumps(found.rows.astype(object).where(found.rows.notna(), None)
                                              .to_dict("records"))))  # fmt: skip
    cohort_figures.conditioning_plot(found.points, rows, "band_gap", "eV", 0.3, tmp_path / "c.png")
    assert drawn(tmp_path / "c.png")


def test_report_part_escapes_and_names_its_figures(tmp_path: Path):
    from dftscreen.cohort_table import write_run_cohorts
    from dftscreen.report import conditioning_section, figure_captions, figure_names

    table = gap_table()
    table["cohort"] = table["cohort"].replace({"model=pi": "model=<pi>"})
    table["cohort_model"] = table["cohort_model"].replace({"pi": "<pi>"})
    write_run_cohorts(table, BASELINE, tmp_path / "c.csv", tmp_path / "c.json", targets_config=GAP)
    data = json.loads((tmp_path / "c.json").read_text())
    specs = {**GAP["properties"], "e_above_hull": None}
    html = conditioning_section(data["conditioning"], table, specs, tmp_path / "report")
    assert "<pi>" not in html and "model=&lt;pi&gt;" in html
    assert "8: 80.0 %" in html and "5 of 20: 25.0 %" in html and "+55.0 (" in html
    assert html.count("<dt>lift</dt>") == 1
    for name in ("conditioning_band_gap.png", "conditioning_e_above_hull.png"):  # the second without data
        assert drawn(tmp_path / "report" / name), name
    assert "conditioning_e_above_hull.png" not in html
    assert "conditioning_band_gap.png" in figure_names(["band_gap"], cohort_ordered=[])
    assert not any(n.startswith("conditioning_") for n in figure_names(["band_gap"]))  # no config cohorts
    captions = figure_captions(["conditioning_band_gap.png"])
    assert captions == {"conditioning_band_gap.png": "conditioning.rst"}
    assert (REPO / "workflow" / "report" / "conditioning.rst").is_file()


def test_condition_values_read_back_from_text_are_one_condition():
    points = pd.DataFrame({"cohort": "a", "requested": [1.8, float("1.8000000000001"), 0.1 + 0.2],
                           "computed": [1.8, 1.8, 0.3], "source": "DFT"})  # fmt: skip
    rows = condition_rows(points, 0.1)
    assert rows["condition_value"].tolist() == pytest.approx([0.3, 1.8]) and rows["n"].tolist() == [1, 2]
    assert np.all(rows["hits"] == rows["n"])
