"""Cohort statistics for 100,000 inputs in 50 cohorts (issue 30: at most 10 s). Not a test.

Builds a synthetic results table (seeded): 5 models x 10 condition values = 50 cohorts of
2,000 inputs, with every column :mod:`dftscreen.cohort_table` reads: statuses (invalid,
ok, not_converged, failed, not_finished, screened_out), duplicates within a cohort and
across cohorts (each group's representative in a random cohort), CrystaLLM validity,
novelty of the generated and the relaxed structure, ML status, energies above the known
hull, a band-gap target (error and hit) and core-hours. Then times, figures excluded:

- ``cohort_rates`` (every rate of every cohort with its Wilson interval),
- ``compare_with_baseline`` (every other cohort against model=m0, condition=0: Newcombe
  interval, ratio, Fisher p, Holm over all, detectable difference, n to resolve),
- ``trend_rows`` over the ordered condition value, within each model,

each in wall and CPU seconds, after a warm-up that imports statsmodels and scipy
(1.5 s, paid once per process; printed apart). Prints the figures; asserts nothing timed.

    PYTHONPATH=src .venv/bin/python bench/cohort_stats.py [--n 100000] [--models 5] [--conditions 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from dftscreen import cohort_table
from dftscreen.cohort_table import trend_rows

#: The configured defaults (config.schema.yaml: cohorts).
SETTINGS = {"stable_threshold_eV_per_atom": 0.0, "metastable_threshold_eV_per_atom": 0.1, "alpha": 0.05}


def cohort_rates(table: pd.DataFrame) -> pd.DataFrame:
    return cohort_table.cohort_rates(table, **SETTINGS)


def compare_with_baseline(rates: pd.DataFrame, baseline: str) -> pd.DataFrame:
    return cohort_table.compare_with_baseline(rates, baseline, alpha=SETTINGS["alpha"])


def synthetic_results(n: int, models: int, conditions: int, seed: int = 0) -> pd.DataFrame:
    """A results table of ``n`` inputs in ``models`` x ``conditions`` cohorts (see the module docstring)."""
    rng = np.random.default_rng(seed)
    model = rng.integers(0, models, n)
    condition = rng.integers(0, conditions, n).astype(float)
    ids = np.array([f"s{i:06d}" for i in range(n)], dtype=object)
    ready = rng.random(n) < 0.85 - 0.02 * model
    status = rng.choice(
        ["ok", "not_converged", "failed", "not_finished", "screened_out"], n, p=[0.6, 0.05, 0.05, 0.1, 0.2]
    ).astype(object)
    status[~ready] = "invalid"
    # 20 % of the sound structures duplicate an earlier sound one (same cohort half the time).
    duplicate_of = np.full(n, None, dtype=object)
    sound = np.flatnonzero(ready)
    duplicates = sound[rng.random(len(sound)) < 0.2]
    representatives = np.setdiff1d(sound, duplicates)
    chosen = rng.choice(representatives, len(duplicates))
    duplicate_of[duplicates] = ids[chosen]
    status[duplicates] = "duplicate"
    same_cohort = rng.random(len(duplicates)) < 0.5
    model[duplicates[same_cohort]] = model[chosen[same_cohort]]
    condition[duplicates[same_cohort]] = condition[chosen[same_cohort]]
    # A duplicate shows its representative's DFT, novelty and target values (no cost).
    source = np.arange(n)
    source[duplicates] = chosen
    dft = np.isin(status[source], ["ok", "not_converged", "failed"])
    e_hull = np.where(dft, rng.exponential(0.15, n) - 0.03 + 0.01 * condition, np.nan)[source]
    novel = np.where(ready, rng.random(n) < 0.6, None)[source]
    relaxed_novel = np.where(dft, rng.random(n) < 0.55, None)[source]
    gap_error = np.where(dft, rng.normal(0.0, 0.5, n) + 0.02 * condition, np.nan)[source]
    gap_hit = np.where(np.isnan(gap_error), None, np.abs(gap_error) <= 0.3)
    relax_cost = np.where(dft & (status != "duplicate"), rng.gamma(2.0, 1.5, n), np.nan)
    properties_cost = np.where((status == "ok"), rng.gamma(2.0, 0.5, n), np.nan)
    condition_text = np.char.add(", condition=", condition.astype(int).astype(str))
    cohort = np.char.add(np.char.add("model=m", model.astype(str)), condition_text)
    return pd.DataFrame(
        {
            "structure_id": ids,
            "cohort": cohort.astype(object),
            "cohort_model": np.char.add("m", model.astype(str)).astype(object),
            "cohort_condition": condition,
            "status": status,
            "dft_ready": ready,
            "duplicate_of": duplicate_of,
            "crystallm_valid": rng.random(n) < 0.9,
            "novel": novel,
            "relaxed_novel": relaxed_novel,
            "ml_status": "ok",
            "e_above_hull_eV_per_atom": e_hull,
            "relax_converged": np.where(dft, status[source] != "not_converged", None),
            "band_gap_error_eV": gap_error,
            "band_gap_hit": gap_hit,
            "relax_core_hours": relax_cost,
            "properties_core_hours": properties_cost,
        }
    )


def timed(label: str, func, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    result = func(*args, **kwargs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{label:<42} {wall:7.2f} s wall {cpu:7.2f} s CPU")
    return result, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--conditions", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    table, _ = timed("synthetic table (not counted)", synthetic_results, args.n, args.models, args.conditions)
    duplicates = int((table["status"] == "duplicate").sum())
    print(f"{len(table)} inputs, {table['cohort'].nunique()} cohorts, {duplicates} duplicates")
    small = table.iloc[:200]
    _, warm = timed(
        "warm-up: statsmodels + scipy imports",
        lambda: compare_with_baseline(cohort_rates(small), small["cohort"].iloc[0]),
    )
    baseline = "model=m0, condition=0"
    totals = []
    for attempt in range(args.repeat):
        print(f"-- run {attempt + 1}")
        rates, t_rates = timed("cohort_rates", cohort_rates, table)
        comparisons, t_compare = timed("compare_with_baseline", compare_with_baseline, rates, baseline)
        trends, t_trends = timed("trend_rows (condition, within model)", trend_rows, rates, "condition")
        total = t_rates + t_compare + t_trends
        totals.append(total)
        print(f"{'total':<42} {total:7.2f} s wall")
    print(
        f"{len(rates)} cohort rows x {rates.shape[1]} columns; {len(comparisons)} comparisons "
        f"({comparisons['metric'].nunique()} metrics); {len(trends)} trends"
    )
    print(
        f"best of {args.repeat}: {min(totals):.2f} s (median {np.median(totals):.2f} s) for {len(table)} inputs in "
        f"{len(rates)} cohorts; + {warm:.2f} s once per process for the imports (goal: at most 10 s)"
    )
    verdicts = comparisons["verdict"].str.split(" ", n=1).str[0].value_counts().to_dict()
    print(f"verdicts: {verdicts}")


if __name__ == "__main__":
    main()
