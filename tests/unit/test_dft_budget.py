"""dftscreen.dft_budget and its use: a seeded random DFT sample per cohort, planned and marked (issue 30, item 4)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from dftscreen import status_codes
from dftscreen.aggregate import dft_status_note
from dftscreen.cohort_stats import weighted_rate
from dftscreen.cohort_table import audit_rates, cohort_rates
from dftscreen.config import with_defaults
from dftscreen.dft_budget import budget_draw, budget_sample
from dftscreen.layout import ResultsLayout
from dftscreen.ml_hull import audit_draw
from dftscreen.plan import RunPlan
from dftscreen.table import add_budget_columns

SETTINGS = {"stable_threshold_eV_per_atom": 0.0, "metastable_threshold_eV_per_atom": 0.1, "alpha": 0.05}


def cohorts_of(ids: dict[str, list[str]]) -> tuple[list[str], dict[str, str]]:
    candidates = [sid for members in ids.values() for sid in members]
    return candidates, {sid: cohort for cohort, members in ids.items() for sid in members}


def test_each_cohort_keeps_at_most_n_a_random_sample_not_the_first_n():
    candidates, cohort_of = cohorts_of({"a": [f"a{i:03d}" for i in range(100)], "b": ["b1", "b2"]})
    sample = budget_sample(candidates, cohort_of, max_per_cohort=10, seed=0)
    chosen_a = [sid for sid in sample.selected if cohort_of[sid] == "a"]
    assert len(chosen_a) == 10 and chosen_a != candidates[:10]
    assert {"b1", "b2"} <= set(sample.selected)  # a cohort within the budget keeps everything
    assert sample.fraction == {"a": 0.1, "b": 1.0} and sample.counts == {"a": (10, 100), "b": (2, 2)}
    assert set(sample.left_out) == set(candidates) - set(sample.selected)
    # In the candidates' order, reproducible, and another seed draws another sample.
    assert list(sample.selected) == [sid for sid in candidates if sid in set(sample.selected)]
    assert budget_sample(candidates, cohort_of, max_per_cohort=10, seed=0) == sample
    assert budget_sample(candidates, cohort_of, max_per_cohort=10, seed=1).selected != sample.selected
    assert "10 of the 100 candidates of cohort 'a'" in sample.note("a", 10)


def test_no_budget_keeps_every_candidate():
    candidates, cohort_of = cohorts_of({"a": ["x", "y"]})
    assert budget_sample(candidates, cohort_of, max_per_cohort=None, seed=3).selected == ("x", "y")


def test_raising_the_budget_or_adding_candidates_keeps_what_was_drawn():
    candidates, cohort_of = cohorts_of({"a": [f"s{i}" for i in range(50)]})
    small = set(budget_sample(candidates, cohort_of, max_per_cohort=5, seed=7).selected)
    larger = set(budget_sample(candidates, cohort_of, max_per_cohort=12, seed=7).selected)
    assert small < larger
    # A new candidate displaces one drawn structure at most.
    more, more_cohorts = cohorts_of({"a": [*candidates, "new"]})
    after = set(budget_sample(more, more_cohorts, max_per_cohort=5, seed=7).selected)
    assert len(small & after) >= 4


def test_every_candidate_is_drawn_with_probability_n_over_m():
    """A simple random sample: over 2,000 seeds each of 10 candidates is drawn about 3 / 10 of the time
    (a two-sided binomial test per candidate, each at 0.001), and the budget's draw is not the audit's."""
    candidates, cohort_of = cohorts_of({"a": [f"c{i}" for i in range(10)]})
    counts = dict.fromkeys(candidates, 0)
    for seed in range(2000):
        for sid in budget_sample(candidates, cohort_of, max_per_cohort=3, seed=seed).selected:
            counts[sid] += 1
    assert all(binomtest(k, 2000, 0.3).pvalue > 0.001 for k in counts.values()), counts
    draws = [(budget_draw(f"c{i}", 0), audit_draw(f"c{i}", 0)) for i in range(200)]
    assert abs(np.corrcoef(np.array(draws).T)[0, 1]) < 0.25


def write_lines(path: str, ids: list[str]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(f"{sid}\n" for sid in ids))


def budget_table() -> pd.DataFrame:
    """Cohort a: 6 candidates (a0-a5), a duplicate of a5 and an invalid file; cohort b: 1 candidate."""
    rows = [{"structure_id": f"a{i}", "cohort": "a", "status": "not_finished", "reason": "", "duplicate_of": None,
             "dft_ready": True} for i in range(6)]  # fmt: skip
    rows.append({"structure_id": "a5-twin", "cohort": "a", "status": "duplicate", "duplicate_of": "a5",
                 "reason": "same crystal as a5" + dft_status_note("a5", "not_finished"), "dft_ready": True})
    rows.append({"structure_id": "a-bad", "cohort": "a", "status": "invalid", "reason": "overlap", "duplicate_of": None,
                 "dft_ready": False})  # fmt: skip
    rows.append({"structure_id": "b0", "cohort": "b", "status": "ok", "reason": "", "duplicate_of": None,
                 "dft_ready": True})  # fmt: skip
    return pd.DataFrame(rows)


def test_the_table_marks_what_the_budget_left_out_and_weighs_the_sample(tmp_path: Path):
    layout = ResultsLayout.of(tmp_path)
    candidates = [f"a{i}" for i in range(6)] + ["b0"]
    write_lines(layout.valid_ids, candidates)
    dft = {"max_structures_per_cohort": 2, "budget_seed": 5}
    table = add_budget_columns(budget_table(), tmp_path, dft, ml_stage=False).set_index("structure_id")
    sample = budget_sample(candidates, {**dict.fromkeys(candidates[:6], "a"), "b0": "b"}, max_per_cohort=2, seed=5)
    drawn = set(sample.selected)
    for sid in candidates[:6]:
        assert table.loc[sid, "dft_sampled"] is (sid in drawn)
        if sid in drawn:
            assert table.loc[sid, "status"] == "not_finished"
            assert table.loc[sid, "dft_inclusion_probability"] == pytest.approx(2 / 6)
        else:
            assert table.loc[sid, "status"] == status_codes.NOT_SAMPLED
            assert "2 of the 6 candidates of cohort 'a'" in table.loc[sid, "reason"]
    # A duplicate shows its representative's draw; rows that were no candidate get nothing.
    assert table.loc["a5-twin", "dft_sampled"] is table.loc["a5", "dft_sampled"]
    if "a5" not in drawn:
        assert table.loc["a5-twin", "reason"].endswith("(a5 is not in the DFT sample)")
    assert table.loc["a-bad", "dft_sampled"] is None and math.isnan(table.loc["a-bad", "dft_inclusion_probability"])
    assert table.loc["b0", "dft_sampled"] is True and table.loc["b0", "dft_inclusion_probability"] == 1.0
    # Without a budget the table is unchanged.
    assert add_budget_columns(budget_table(), tmp_path, {"max_structures_per_cohort": None}, ml_stage=False).equals(
        budget_table()
    )


def test_the_screen_probability_is_multiplied_by_the_sampled_fraction(tmp_path: Path):
    layout = ResultsLayout.of(tmp_path)
    write_lines(layout.ml_dft_ids, ["a0", "a1", "a2", "a3"])  # the ML screen's list, audited a3 in it
    table = budget_table().iloc[:4].copy()
    table["dft_inclusion_probability"] = [1.0, 1.0, 1.0, 0.25]
    out = add_budget_columns(table, tmp_path, {"max_structures_per_cohort": 2, "budget_seed": 0}, ml_stage=True)
    assert out["dft_inclusion_probability"].tolist() == pytest.approx([0.5, 0.5, 0.5, 0.125])


def sampled_table() -> pd.DataFrame:
    """Cohort s: 10 DFT candidates, the budget drew 4 (2 stable), 6 not_sampled; 10 invalid files."""
    rows = []
    for i in range(4):
        rows.append({"structure_id": f"in{i}", "status": "ok", "e_above_hull_eV_per_atom": 0.0 if i < 2 else 0.4,
                     "dft_sampled": True, "dft_inclusion_probability": 0.4})  # fmt: skip
    for i in range(6):
        rows.append({"structure_id": f"out{i}", "status": "not_sampled", "e_above_hull_eV_per_atom": math.nan,
                     "dft_sampled": False, "dft_inclusion_probability": 0.4})  # fmt: skip
    for i in range(10):
        rows.append({"structure_id": f"bad{i}", "status": "invalid", "e_above_hull_eV_per_atom": math.nan,
                     "dft_sampled": None, "dft_inclusion_probability": math.nan})  # fmt: skip
    table = pd.DataFrame(rows)
    table["cohort"] = "s"
    table["dft_ready"] = table["status"] != "invalid"
    table["novel"] = True
    return table


def test_rates_from_a_budget_sample_are_weighted_back_to_every_input():
    """Known answer: each sampled crystal stands for 10 / 4 candidates, so stable is estimated at
    2 * 2.5 = 5 of 10 + 10 = 20 inputs (0.25), where the plain rate counts 2 of 20."""
    table = sampled_table()
    rates = cohort_rates(table, **SETTINGS).set_index("cohort").loc["s"]
    assert rates["stable_rate"] == pytest.approx(2 / 20)
    assert (rates["dft_not_sampled_count"], rates["dft_pending_count"], rates["dft_done_count"]) == (6, 0, 4)
    weighted = audit_rates(table, **SETTINGS).loc["s"]
    assert weighted["stable_weighted_rate"] == pytest.approx(0.25)
    expected = weighted_rate(np.array([1, 1, 0, 0] + [0] * 10), np.array([0.4] * 4 + [1.0] * 10))
    assert (weighted["stable_weighted_low"], weighted["stable_weighted_high"]) == pytest.approx(
        (expected.low, expected.high)
    )
    assert weighted["screened_out_unique"] == 0  # no ML stage: nothing screened


def test_the_plan_sends_the_sample_to_dft_and_status_counts_the_rest(tmp_path: Path, monkeypatch):
    from pymatgen.core import Lattice, Structure

    for model, n in (("m1", 5), ("m2", 2)):
        for i in range(n):
            folder = tmp_path / "cifs" / model
            folder.mkdir(parents=True, exist_ok=True)
            Structure(Lattice.cubic(4.0 + 0.1 * i), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(
                filename=str(folder / f"s{i}.cif")
            )
    monkeypatch.chdir(tmp_path)
    config = with_defaults({
        "input": {"cif_dir": "cifs"}, "output_dir": "out",
        "dft": {"max_structures_per_cohort": 3, "budget_seed": 2},
        "cohorts": {"source": "folders", "folder_levels": ["model"]},
    })  # fmt: skip
    plan = RunPlan(config)
    assert set(plan.input_cohorts.values()) == {"model=m1", "model=m2"}
    candidates = sorted(plan.inputs)
    kept = plan.within_dft_budget(candidates)
    assert plan.within_dft_budget(candidates) is kept  # planned once per id list
    by_cohort = pd.Series([plan.input_cohorts[sid] for sid in kept]).value_counts().to_dict()
    assert by_cohort == {"model=m1": 3, "model=m2": 2}
    unbudgeted = RunPlan(with_defaults({"input": {"cif_dir": "cifs"}, "output_dir": "out"}))
    assert unbudgeted.within_dft_budget(candidates) is candidates

    from dftscreen.status import dft_structures

    checks = [{"structure_id": sid, "valid": True} for sid in candidates]
    to_dft, screened, left_out = dft_structures(tmp_path / "out", checks, plan)
    assert (sorted(to_dft), screened, left_out) == (sorted(kept), 0, 2)


def test_no_weighted_rate_while_a_sampled_crystal_waits_for_its_dft():
    """A partial table (DFT still running) must not read a pending crystal as 'not stable'."""
    table = sampled_table()
    table.loc[0, "status"] = "not_finished"
    table.loc[0, "e_above_hull_eV_per_atom"] = math.nan
    weighted = audit_rates(table, **SETTINGS).loc["s"]
    assert pd.isna(weighted["stable_weighted_rate"]) and pd.isna(weighted["sun_weighted_low"])
