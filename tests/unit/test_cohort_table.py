"""dftscreen.cohort_table: per-cohort counts recomputed by hand, intervals, comparisons, trends (issue 30)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from dftscreen.cohort_stats import (
    detectable_difference,
    holm_adjust,
    rate_difference,
    sample_size_to_resolve,
    wilson_interval,
)
from dftscreen.cohort_table import (
    COMPARISON_DEFINITIONS,
    DEFINITIONS,
    cohort_rates,
    compare_with_baseline,
    rate_metrics,
    trend_rows,
    write_cohort_outputs,
)
from dftscreen.summary import summarize

NAN = math.nan

# One row per input. Cohort a is the baseline. Duplicates: a2 of a1 (within a); b1 and b2 of a1
# (their representative lies in cohort a: the group counts once in b); b4 of b3 (within b); b7 of
# a4, which the ML screen kept from DFT. A duplicate row shows its representative's DFT, novelty
# and target values, and no cost (dftscreen.aggregate.duplicate_row). c1 relaxed into a known
# crystal (novel, not relaxed_novel). Cohort d has no input (a category of the cohort column).
# fmt: off
ROWS = [
    # id   cohort status        ready  dup_of crystallm novel  r_novel ehull  relax_conv gap_err hit   relax_ch prop_ch
    ("a1", "a", "ok",           True,  None,  True,  True,  True,  0.0,   True,  0.1,  True,  2.0, 1.0),
    ("a2", "a", "duplicate",    True,  "a1",  True,  True,  True,  0.0,   True,  0.1,  True,  NAN, NAN),
    ("a3", "a", "ok",           True,  None,  True,  False, False, 0.05,  True,  0.5,  False, 3.0, 1.0),
    ("a4", "a", "screened_out", True,  None,  True,  True,  None,  NAN,   None,  NAN,  None,  NAN, NAN),
    ("a5", "a", "invalid",      False, None,  False, None,  None,  NAN,   None,  NAN,  None,  NAN, NAN),
    ("a6", "a", "failed",       True,  None,  True,  True,  True,  -0.01, True,  NAN,  None,  1.0, 0.5),
    ("a7", "a", "not_finished", True,  None,  True,  None,  None,  NAN,   None,  NAN,  None,  NAN, NAN),
    ("b1", "b", "duplicate",    True,  "a1",  True,  True,  True,  0.0,   True,  0.1,  True,  NAN, NAN),
    ("b2", "b", "duplicate",    True,  "a1",  True,  True,  True,  0.0,   True,  0.1,  True,  NAN, NAN),
    ("b3", "b", "ok",           True,  None,  True,  True,  True,  0.2,   True,  -0.2, True,  1.0, 1.0),
    ("b4", "b", "duplicate",    True,  "b3",  True,  True,  True,  0.2,   True,  -0.2, True,  NAN, NAN),
    ("b5", "b", "failed",       True,  None,  True,  False, None,  NAN,   False, NAN,  None,  0.5, NAN),
    ("b6", "b", "invalid",      None,  None,  None,  None,  None,  NAN,   None,  NAN,  None,  NAN, NAN),
    ("b7", "b", "duplicate",    True,  "a4",  True,  True,  None,  NAN,   None,  NAN,  None,  NAN, NAN),
    ("c1", "c", "ok",           True,  None,  True,  True,  False, 0.0,   True,  0.0,  True,  5.0, 0.0),
]
# fmt: on
COLUMNS = [
    "structure_id", "cohort", "status", "dft_ready", "duplicate_of", "crystallm_valid", "novel", "relaxed_novel",
    "e_above_hull_eV_per_atom", "relax_converged", "band_gap_error_eV", "band_gap_hit", "relax_core_hours",
    "properties_core_hours",
]  # fmt: skip

# Counted by hand from ROWS (stable threshold 0, metastable 0.1 eV/atom).
EXPECTED = {
    #                   a   b   c  d
    "n":               (7, 7, 1, 0),
    "crystallm_valid": (6, 6, 1, 0),
    "dft_ready":       (6, 6, 1, 0),  # a5 and b6 not
    "unique_in_cohort": (5, 4, 1, 0),  # a: {a1,a2} a3 a4 a6 a7; b: {b1,b2} {b3,b4} b5 b7
    "novel":           (3, 3, 1, 0),  # a: a1 a4 a6; b: b1 b3 b7
    "passed_ml_screen": (4, 3, 1, 0),  # a4 and b7 (a4's duplicate) screened out
    "dft_done":        (2, 2, 1, 0),  # a1 a3; b1 (a1's DFT) b3
    "dft_failed":      (1, 1, 0, 0),
    "dft_pending":     (1, 0, 0, 0),
    "stable":          (2, 1, 1, 0),  # a1, a6 (relaxed, properties failed); b1; c1
    "metastable":      (3, 1, 1, 0),  # + a3 (0.05); b3 is 0.2 above
    "sun":             (2, 1, 0, 0),  # c1 relaxed into a known crystal
    "msun":            (2, 1, 0, 0),  # a3 is not novel
    "on_target_band_gap": (1, 2, 1, 0),
    "on_target":       (1, 2, 1, 0),
    "sun_on_target":   (1, 1, 0, 0),
}  # fmt: skip


def results(categorical: bool = True) -> pd.DataFrame:
    table = pd.DataFrame(ROWS, columns=COLUMNS)
    if categorical:
        table["cohort"] = pd.Categorical(table["cohort"], categories=["a", "b", "c", "d"])
    table["ml_status"] = "ok"
    return table


#: The configured defaults (config.schema.yaml: cohorts).
SETTINGS = {"stable_threshold_eV_per_atom": 0.0, "metastable_threshold_eV_per_atom": 0.1, "alpha": 0.05}


def rates_of(table: pd.DataFrame) -> pd.DataFrame:
    return cohort_rates(table, **SETTINGS)


def compare(rates: pd.DataFrame, baseline: str) -> pd.DataFrame:
    return compare_with_baseline(rates, baseline, alpha=0.05)


@pytest.fixture(scope="module")
def rates() -> pd.DataFrame:
    return rates_of(results()).set_index("cohort")


def test_counts_equal_those_counted_by_hand(rates):
    assert rates.index.tolist() == ["a", "b", "c", "d"]
    for metric, expected in EXPECTED.items():
        column = "n" if metric == "n" else f"{metric}_count"
        assert tuple(rates[column]) == expected, metric


def test_rates_and_intervals_are_cohort_stats_for_those_counts(rates):
    for metric in EXPECTED:
        if metric == "n":
            continue
        for cohort, row in rates.iterrows():
            count, n = row[f"{metric}_count"], row["n"]
            assert (row[f"{metric}_low"], row[f"{metric}_high"]) == pytest.approx(wilson_interval(count, n), abs=1e-12)
            if n:
                assert row[f"{metric}_rate"] == pytest.approx(count / n)
            else:
                assert math.isnan(row[f"{metric}_rate"]), (metric, cohort)


def test_empty_and_one_structure_cohorts_get_rows(rates):
    empty, single = rates.loc["d"], rates.loc["c"]
    assert empty["n"] == 0 and (empty["sun_low"], empty["sun_high"]) == (0.0, 1.0)
    assert empty["total_core_hours"] == 0.0 and empty["core_hours_per_sun"] is None
    assert single["n"] == 1 and single["stable_rate"] == 1.0
    assert (single["stable_low"], single["stable_high"]) == pytest.approx(wilson_interval(1, 1))
    # Without a categorical cohort column a cohort exists only if it has inputs.
    plain = rates_of(results(categorical=False))
    assert plain["cohort"].tolist() == ["a", "b", "c"]


def test_target_errors_and_cost(rates):
    # Errors as summary.json counts them: every row with an error, duplicates included.
    assert rates["band_gap_n_compared"].tolist() == [3, 4, 1, 0]
    assert rates.loc["a", "band_gap_mae_eV"] == pytest.approx((0.1 + 0.1 + 0.5) / 3)
    assert rates.loc["b", "band_gap_mae_eV"] == pytest.approx(0.15)
    assert rates.loc["b", "band_gap_bias_eV"] == pytest.approx(-0.05)
    assert math.isnan(rates.loc["d", "band_gap_mae_eV"])
    # Each cohort pays for the DFT of every crystal it found: b pays a1's (through b1) once.
    assert rates["relax_core_hours"].tolist() == pytest.approx([6.0, 3.5, 5.0, 0.0])
    assert rates["properties_core_hours"].tolist() == pytest.approx([2.5, 2.0, 0.0, 0.0])
    assert rates["total_core_hours"].tolist() == pytest.approx([8.5, 5.5, 5.0, 0.0])
    assert rates.loc["a", "core_hours_per_sun"] == pytest.approx(4.25)
    assert rates.loc["b", "core_hours_per_sun_on_target"] == pytest.approx(5.5)
    assert rates.loc["c", "core_hours_per_sun"] is None


def test_duplicate_order_does_not_matter():
    """A duplicate listed before its representative: the same counts (and an index of no use changes nothing)."""
    table = results().iloc[::-1]
    table.index = [0] * len(table)
    reversed_rates = rates_of(table).set_index("cohort")
    for metric, expected in EXPECTED.items():
        assert tuple(reversed_rates["n" if metric == "n" else f"{metric}_count"]) == expected, metric
    assert reversed_rates["total_core_hours"].tolist() == pytest.approx([8.5, 5.5, 5.0, 0.0])


def test_one_cohort_counts_equal_the_run_summary():
    table = results().drop(columns="cohort")
    one = rates_of(table).iloc[0]
    summary = summarize(table, stable_threshold_eV_per_atom=0.0, known_set="known")
    assert one["cohort"] == "all" and one["n"] == summary["n_inputs"] == 15
    assert one["dft_ready_count"] == summary["valid"]["count"]
    assert one["unique_in_cohort_count"] == summary["unique"]["count"] == 8
    assert one["novel_count"] == summary["novel"]["count"]
    assert one["stable_count"] == summary["stable"]["count"] == 3
    assert one["sun_count"] == summary["stable_unique_novel"]["count"] == 2
    assert one["total_core_hours"] == pytest.approx(summary["cost"]["total_core_hours"])
    assert one["band_gap_mae_eV"] == pytest.approx(summary["targets"]["band_gap"]["mean_absolute_error"])
    assert one["band_gap_n_compared"] == summary["targets"]["band_gap"]["n_compared"]


def test_columns_appear_only_with_what_they_need():
    bare = pd.DataFrame({"structure_id": ["x", "y"], "status": ["ok", "invalid"]})
    rates = rates_of(bare)
    metrics = rate_metrics(rates)
    assert metrics == ["dft_ready", "unique_in_cohort", "dft_done", "dft_failed", "dft_pending"]
    assert rates["dft_ready_count"].tolist() == [1]
    # A known set but no hull: no stable, no S.U.N.; a hull but no known set: stable, no S.U.N.
    assert "sun_count" not in rates_of(bare.assign(novel=[True, None])).columns
    hull_only = rates_of(bare.assign(e_above_hull_vs_generated_only_eV_per_atom=[0.0, None]))
    assert hull_only["stable_count"].tolist() == [1] and "sun_count" not in hull_only.columns


def test_every_column_has_one_definition(rates):
    names = set()
    for column in rates.reset_index().columns:
        if column == "cohort":
            continue
        metric = re.sub(r"_(count|rate|low|high)$", "", column) if column.endswith(
            ("_count", "_rate", "_low", "_high")
        ) else column
        metric = re.sub(r"^on_target_band_gap$", "on_target_<name>", metric)
        metric = re.sub(r"^band_gap_(n_compared|mae|bias)(_eV)?$", r"<name>_\1", metric)
        metric = {"<name>_mae": "<name>_mae_<unit>", "<name>_bias": "<name>_bias_<unit>"}.get(metric, metric)
        names.add(metric)
    assert names - set(DEFINITIONS) == set()
    assert all(isinstance(text, str) and text for text in DEFINITIONS.values())


# Comparisons ----------------------------------------------------------------------------------


def test_comparisons_are_cohort_stats_and_holm_runs_over_all_of_them(rates):
    comparisons = compare(rates.reset_index(), "a")
    metrics = rate_metrics(rates.reset_index())
    assert len(comparisons) == 3 * len(metrics)
    assert set(comparisons["cohort"]) == {"b", "c", "d"} and set(comparisons["baseline"]) == {"a"}
    row = comparisons.set_index(["cohort", "metric"]).loc[("b", "on_target")]
    expected = rate_difference(2, 7, 1, 7, 0.05)
    assert (row["difference"], row["difference_low"], row["difference_high"]) == pytest.approx(
        (expected.difference, expected.low, expected.high)
    )
    assert (row["ratio"], row["fisher_p"]) == pytest.approx((expected.ratio, expected.fisher_p))
    assert comparisons["holm_p"].tolist() == pytest.approx(holm_adjust(comparisons["fisher_p"].tolist()), nan_ok=True)


def test_holm_runs_over_every_comparison_of_the_table_at_once():
    """Not per cohort, nor per metric: the family is every (cohort, metric) of the table."""
    comparisons = compare(rates_of(trend_table()), "model=m2, temperature=0.5")
    assert len(comparisons) == 7 * 5
    assert comparisons["holm_p"].tolist() == pytest.approx(holm_adjust(comparisons["fisher_p"].tolist()), nan_ok=True)
    one_cohort = comparisons["cohort"] == "model=m1, temperature=2.0"
    alone = holm_adjust(comparisons.loc[one_cohort, "fisher_p"].tolist())
    assert (comparisons.loc[one_cohort, "holm_p"].to_numpy() > np.array(alone) + 1e-12).any()


def test_verdict_where_the_interval_covers_zero(rates):
    comparisons = compare(rates.reset_index(), "a").set_index(["cohort", "metric"])
    stable = comparisons.loc[("b", "stable")]  # 1/7 against 2/7
    assert stable["difference_low"] < 0 < stable["difference_high"]
    needed = sample_size_to_resolve(1 / 7, 2 / 7)
    assert stable["n_per_cohort_to_resolve"] == needed
    assert stable["verdict"] == (
        f"indistinguishable at this sample size (about {needed - 7} more structures per cohort would settle it)"
    )
    # No drop from 2/7 is large enough for 7 against 7 structures to detect; a rise is.
    assert pd.isna(stable["detectable_difference"]) and detectable_difference(7, 7, 2 / 7, direction="down") is None
    rise = comparisons.loc[("b", "on_target"), "detectable_difference"]  # 2/7 against 1/7
    assert rise == pytest.approx(detectable_difference(7, 7, 1 / 7, direction="up"))
    equal = comparisons.loc[("b", "dft_done")]  # 2/7 against 2/7
    assert equal["verdict"].startswith("indistinguishable at this sample size (the two rates are equal")
    assert pd.isna(equal["n_per_cohort_to_resolve"])
    assert comparisons.loc[("d", "stable"), "verdict"] == "no comparison: a cohort has no structures"


def test_verdict_higher_and_lower_when_the_interval_excludes_zero():
    table = pd.DataFrame(
        {
            "structure_id": [f"s{i}" for i in range(400)],
            "cohort": ["base"] * 200 + ["new"] * 200,
            "status": ["ok"] * 20 + ["invalid"] * 180 + ["ok"] * 120 + ["invalid"] * 80,
        }
    )
    comparisons = compare(rates_of(table), "base").set_index("metric")
    assert comparisons.loc["dft_ready", "verdict"] == "higher"
    assert comparisons.loc["dft_ready", "significant_after_holm"]
    assert compare(rates_of(table), "new").set_index("metric").loc["dft_ready", "verdict"] == "lower"


def test_unknown_baseline_is_an_error(rates):
    with pytest.raises(ValueError, match="baseline 'z' names no cohort; cohorts: a, b, c, d"):
        compare(rates.reset_index(), "z")


def test_comparison_definitions_cover_the_columns(rates):
    comparisons = compare(rates.reset_index(), "a")
    for column in ("difference", "ratio", "fisher_p", "holm_p", "detectable_difference", "n_per_cohort_to_resolve"):
        assert column in comparisons.columns and column in COMPARISON_DEFINITIONS


# Trends -----------------------------------------------------------------------------------------


def trend_table() -> pd.DataFrame:
    """Two models x four temperatures, 100 inputs each: m1's dft_ready rate falls 0.9 -> 0.3, m2's stays 0.5."""
    rows = []
    for model, rates in (("m1", (0.9, 0.7, 0.5, 0.3)), ("m2", (0.5, 0.5, 0.5, 0.5))):
        for temperature, rate in zip((0.5, 1.0, 1.5, 2.0), rates):
            ready = round(rate * 100)
            for i in range(100):
                rows.append(
                    {
                        "structure_id": f"{model}-{temperature}-{i}",
                        "cohort": f"model={model}, temperature={temperature}",
                        "cohort_model": model,
                        "cohort_temperature": temperature,
                        "cohort_seed": str(i % 3),  # pooled: varies within a cohort
                        "status": "ok" if i < ready else "invalid",
                    }
                )
    return pd.DataFrame(rows)


def test_a_clear_monotone_trend_has_a_small_p_within_its_model():
    rates = rates_of(trend_table())
    assert "cohort_seed" not in rates.columns  # pooled factor: no single value per cohort
    assert rates["cohort"].tolist()[:2] == ["model=m1, temperature=0.5", "model=m1, temperature=1.0"]
    trends = trend_rows(rates, "temperature").set_index(["stratum", "metric"])
    falling = trends.loc[("model=m1", "dft_ready")]
    assert falling["p"] < 1e-12 and falling["z"] < 0 and falling["direction"] == "falls"
    assert falling["levels"] == 4 and falling["n"] == 400 and falling["count"] == 240
    flat = trends.loc[("model=m2", "dft_ready")]
    assert flat["z"] == pytest.approx(0.0, abs=1e-12) and flat["p"] == pytest.approx(1.0)
    assert trends["holm_p"].tolist() == pytest.approx(holm_adjust(trends["p"].tolist()), nan_ok=True)
    pooled = trend_rows(rates, "temperature", within=(), metrics=["dft_ready"])
    assert pooled["stratum"].tolist() == ["all"] and pooled["n"].tolist() == [800]
    assert pooled["p"].iloc[0] < 1e-6


def test_an_ordered_factor_that_is_not_a_number_is_an_error():
    rates = rates_of(trend_table().assign(cohort_temperature=lambda t: t["cohort_temperature"].astype(str)))
    rates.loc[0, "cohort_temperature"] = "hot"
    with pytest.raises(ValueError, match="ordered factor 'temperature' has values that are not numbers: 'hot'"):
        trend_rows(rates, "temperature")
    with pytest.raises(ValueError, match="no factor 'pressure'"):
        trend_rows(rates, "pressure")


# Output files -------------------------------------------------------------------------------------


def test_outputs_are_one_row_per_cohort_and_json_with_the_definitions(rates, tmp_path):
    table = rates.reset_index()
    comparisons = compare(table, "a")
    write_cohort_outputs(table, comparisons, None, tmp_path / "cohorts.csv", tmp_path / "cohorts.json")
    written = pd.read_csv(tmp_path / "cohorts.csv")
    assert written["cohort"].tolist() == ["a", "b", "c", "d"]
    assert written["sun_count"].tolist() == [2, 1, 0, 0]
    data = json.loads((tmp_path / "cohorts.json").read_text())
    assert data["definitions"] == DEFINITIONS and data["trends"] == []
    assert len(data["cohorts"]) == 4 and data["cohorts"][3]["sun_rate"] is None
    assert len(data["comparisons"]) == len(comparisons)
    assert not list(tmp_path.glob(".*.tmp"))


# The ML screen audit and the run's cohort outputs ------------------------------------------------


def screened_table() -> pd.DataFrame:
    """Cohort s: 10 crystals past the screen (4 stable), 20 screened out, of which the audit (fraction
    0.5) sent 10 to DFT (2 stable), and one invalid file. Cohort t: 2 crystals past the screen (1
    stable), 3 screened out, none audited. Every crystal is novel."""
    rows = []

    def add(cohort, sid, status, e_hull, screened, audited, probability, ready=True):
        rows.append({"structure_id": sid, "cohort": cohort, "status": status, "dft_ready": ready, "novel": True,
                     "e_above_hull_eV_per_atom": e_hull, "ml_status": "relaxed", "ml_screened_out": screened,
                     "ml_audited": audited, "dft_inclusion_probability": probability})  # fmt: skip

    for i in range(10):
        add("s", f"s-kept-{i}", "ok", 0.0 if i < 4 else 0.3, False, False, 1.0)
    for i in range(10):
        add("s", f"s-audited-{i}", "ok", 0.0 if i < 2 else 0.5, True, True, 0.5)
    for i in range(10):
        add("s", f"s-out-{i}", "screened_out", NAN, True, False, 0.5)
    add("s", "s-broken", "invalid", NAN, None, None, None, ready=False)
    for i in range(2):
        add("t", f"t-kept-{i}", "ok", 0.0 if i == 0 else 0.2, False, False, 1.0)
    for i in range(3):
        add("t", f"t-out-{i}", "screened_out", NAN, True, False, 0.5)
    return pd.DataFrame(rows)


def test_audit_weights_the_dft_rates_back_to_every_input_and_measures_the_screens_misses():
    from dftscreen.cohort_stats import weighted_rate
    from dftscreen.cohort_table import audit_rates

    audit = audit_rates(screened_table(), **SETTINGS)
    s, t = audit.loc["s"], audit.loc["t"]
    assert (s["screened_out_unique"], s["screen_audited"], s["screen_audited_stable"]) == (20, 10, 2)
    # Known answer: each audited crystal stands for two screened-out ones, so the stable crystals are
    # estimated at 4 + 2 * 2 = 8 of 10 + 2 * 10 + 1 (the invalid file) = 31 inputs.
    assert s["stable_weighted_rate"] == pytest.approx(8 / 31)
    assert s["sun_weighted_rate"] == pytest.approx(8 / 31)  # every crystal is novel
    successes = np.array([1] * 4 + [0] * 6 + [1] * 2 + [0] * 8 + [0])
    expected = weighted_rate(successes, np.array([1] * 10 + [0.5] * 10 + [1]))
    assert (s["stable_weighted_low"], s["stable_weighted_high"]) == pytest.approx((expected.low, expected.high))
    # The unweighted rate counts only what reached DFT: 6 of 31.
    plain = rates_of(screened_table()).set_index("cohort").loc["s"]
    assert plain["stable_rate"] == pytest.approx(6 / 31)
    # The screen's verdict: the audited crystals reached DFT but did not pass the screen.
    assert (plain["passed_ml_screen_count"], plain["dft_done_count"]) == (10, 20)
    # The screen's false-negative rate: 2 of the 10 audited were stable, with the Wilson interval.
    assert s["screen_false_negative_rate"] == pytest.approx(0.2)
    assert (s["screen_false_negative_low"], s["screen_false_negative_high"]) == pytest.approx(wilson_interval(2, 10))
    # Screened-out crystals and none audited: nothing stands for them, no weighted rate.
    assert t["screen_audited"] == 0 and pd.isna(t["stable_weighted_rate"]) and pd.isna(t["screen_false_negative_rate"])


def test_a_table_without_the_ml_stage_has_no_audit():
    from dftscreen.cohort_table import audit_rates

    assert audit_rates(results(), **SETTINGS) is None


def test_run_cohorts_with_a_baseline_per_condition_trends_and_the_audit(tmp_path):
    """write_run_cohorts as the aggregate job calls it: two factors, a baseline naming one of them."""
    from dftscreen.cohort_table import write_run_cohorts

    table = trend_table().rename(columns={"cohort_temperature": "cohort_T"})
    table["cohort"] = [f"model={m}, T={t:g}" for m, t in zip(table["cohort_model"], table["cohort_T"])]
    config = {"source": "regex", "regex": r"(?P<model>m\d)-(?P<T>[\d.]+)", "baseline": {"model": "m2"},
              "ordered": ["T"]}  # fmt: skip
    summary = write_run_cohorts(table, config, tmp_path / "cohorts.csv", tmp_path / "cohorts.json",
                                audit_fraction=0.2)  # fmt: skip
    written = pd.read_csv(tmp_path / "cohorts.csv")
    assert len(written) == 8 and "screen_audited" not in written  # no ML columns: no audit
    data = json.loads((tmp_path / "cohorts.json").read_text())
    # m1 at each T against m2 at the same T: four baselines, Holm over all of them.
    pairs = {(c["cohort"], c["baseline"]) for c in data["comparisons"]}
    assert pairs == {(f"model=m1, T={t:g}", f"model=m2, T={t:g}") for t in (0.5, 1.0, 1.5, 2.0)}
    p = [c["fisher_p"] for c in data["comparisons"]]
    assert [c["holm_p"] for c in data["comparisons"]] == pytest.approx(holm_adjust(p), nan_ok=True)
    assert {t["stratum"] for t in data["trends"]} == {"model=m1", "model=m2"}
    assert data["settings"]["baseline"] == {"model": "m2"} and data["settings"]["ordered"] == ["T"]
    # summary.json's part: compact, headline metrics and verdicts.
    assert summary["n_cohorts"] == 8 and summary["baselines"] == [f"model=m2, T={t:g}" for t in (0.5, 1, 1.5, 2)]
    first = summary["cohorts"]["model=m1, T=0.5"]
    assert first["n"] == 100 and first["rates"]["dft_ready"]["count"] == 90
    assert first["factors"] == {"model": "m1", "T": 0.5}
    verdicts = {(c["cohort"], c["metric"]): c["verdict"] for c in summary["comparisons"]}
    assert verdicts[("model=m1, T=0.5", "dft_ready")] == "higher"
    assert verdicts[("model=m1, T=2", "dft_ready")] == "lower"
    assert verdicts[("model=m1, T=1.5", "dft_ready")].startswith("indistinguishable at this sample size")


def test_one_cohort_without_config_still_gets_its_row(tmp_path):
    from dftscreen.cohort_table import write_run_cohorts

    table = results().drop(columns="cohort")
    summary = write_run_cohorts(table, None, tmp_path / "cohorts.csv", tmp_path / "cohorts.json")
    assert pd.read_csv(tmp_path / "cohorts.csv")["cohort"].tolist() == ["all"]
    assert summary["n_cohorts"] == 1 and summary["comparisons"] == [] and summary["trends"] == []
    assert summary["cohorts"]["all"]["rates"]["sun"]["count"] == 2


def test_audit_columns_join_the_rates_of_a_run_with_the_audit_on(tmp_path):
    from dftscreen.cohort_table import write_run_cohorts

    one = screened_table().drop(columns="cohort")
    summary = write_run_cohorts(one, None, tmp_path / "c.csv", tmp_path / "c.json", audit_fraction=0.5)
    audit = summary["cohorts"]["all"]["screen_audit"]
    assert audit["estimates_from_a_sample"] is True and audit["audited"] == 10
    written = pd.read_csv(tmp_path / "c.csv")
    # One cohort: 5 stable past the screen and 2 x 2 audited, of 12 + 2 x 10 + 1 invalid.
    assert written.loc[0, "stable_weighted_rate"] == pytest.approx(9 / 33)
    assert "audit_definitions" in json.loads((tmp_path / "c.json").read_text())


def test_overlap_counts_the_useful_crystals_only_one_cohort_found_and_the_unions_yield_per_core_hour():
    """Item 5: a S.U.N. crystal found by two cohorts (a duplicate group spanning them) is only-here for
    neither; the union counts it once, and the run's DFT core-hours count each crystal's DFT once."""
    from dftscreen.cohort_table import cohort_overlap

    table = pd.DataFrame({
        "structure_id": ["a1", "a2", "b1", "b2"],
        "cohort": ["a", "a", "b", "b"],
        "status": ["ok", "ok", "duplicate", "ok"],
        "duplicate_of": [None, None, "a1", None],
        "dft_ready": [True, True, True, True],
        "e_above_hull_eV_per_atom": [-0.01, -0.02, -0.01, 0.5],
        "novel": [True, True, True, True],
        "total_core_hours": [1.0, 2.0, None, 1.0],
    })
    per_cohort, union = cohort_overlap(table, stable_threshold_eV_per_atom=0.0, metastable_threshold_eV_per_atom=0.1)
    assert per_cohort.loc["a", "sun_only_here"] == 1  # a2; a1 is shared with b
    assert per_cohort.loc["b", "sun_only_here"] == 0
    assert union["unique_sun"] == 2 and union["dft_core_hours"] == 4.0
    assert union["unique_sun_per_core_hour"] == 0.5
