"""Per-cohort rates, differences from the baseline cohort and trends over ordered factors (issue 30).

Pure functions on the results table, no I/O but :func:`write_cohort_outputs`. The table's
``cohort`` column names each input's cohort and ``cohort_<factor>`` columns hold the factor
values (:mod:`dftscreen.columns`); a table without ``cohort`` is one cohort, "all".

:func:`cohort_rates` gives one row per cohort; every rate's denominator is every input of the
cohort, unreadable and duplicate files included, and each rate has its Wilson interval
(:mod:`dftscreen.cohort_stats`). The run-level definitions of :mod:`dftscreen.summary` are
used (``dft_ready``, :func:`~dftscreen.summary.stable`, the novelty S.U.N. counts), with one
addition: a crystal generated more than once counts once per cohort. Duplicates are found over
the whole run, so a structure whose group's representative (``duplicate_of``) lies in another
cohort is unique in its own cohort; its DFT outcome, hull distance, novelty and target values
are the representative's (its row shows them: :func:`dftscreen.aggregate.duplicate_row`), and
so is its cost: a cohort is charged the DFT of every crystal it found, as if it had run alone
(so cohorts' core-hours add up to more than the run's when they share crystals). With one
cohort every count equals :func:`dftscreen.summary.summarize`'s. :data:`DEFINITIONS` states
each column once, in words the report prints.

:func:`compare_with_baseline` compares every other cohort with the baseline, metric by
metric; :func:`trend_rows` tests each metric for a trend over an ordered factor. All three
are vectorised over rows (pandas groupby): a loop runs over cohorts x metrics at most.

With the ML screen audited (``ml.audit_fraction``) or a DFT budget (``dft.max_structures_per_cohort``,
:mod:`dftscreen.dft_budget`), :func:`audit_rates` adds to each cohort the rates after the screen
and the budget weighted back to every input (Horvitz-Thompson, :data:`AUDIT_DEFINITIONS`) and
the screen's false-negative rate. :func:`cohort_report_data` is what a run computes from its
config section ``cohorts`` (the aggregate job); :func:`cohort_summary` its compact part of
summary.json.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dftscreen.cohort_stats import (
    detectable_effect_size,
    difference_at_effect_size,
    holm_adjust,
    rate_difference,
    sample_sizes_to_resolve,
    screen_false_negative_rate,
    trend_test,
    weighted_rate,
    wilson_intervals,
)
from dftscreen.cohorts import CohortSpec, baseline_label
from dftscreen.columns import (
    COHORT_COLUMN,
    COHORT_FACTOR_PREFIX,
    DFT_INCLUSION_PROBABILITY_COLUMN,
    DFT_SAMPLED_COLUMN,
    ML_AUDITED_COLUMN,
    ML_SCREENED_OUT_COLUMN,
    ML_STATUS_COLUMN,
    NOVEL_COLUMN,
    TARGET_UNITS,
    target_columns,
)
from dftscreen.conditioning import conditioning_data, conditioning_json, conditioning_summary
from dftscreen.io import atomic_write_json, atomic_write_with
from dftscreen.status_codes import DUPLICATE, FAILED, NOT_CONVERGED, NOT_FINISHED, NOT_SAMPLED, OK, SCREENED_OUT
from dftscreen.summary import STAGE_COST_COLUMNS, dft_ready, hull_column, stable, sun_novelty_column

#: The cohort of every input of a table without a ``cohort`` column.
ALL = "all"

#: What each column of cohorts.csv means, one sentence each (``<name>``: a target property,
#: ``<unit>`` its unit). A rate metric ``m`` has columns ``m_count``, ``m_rate`` (count / n) and
#: ``m_low`` / ``m_high`` (its Wilson interval at the configured alpha).
DEFINITIONS: dict[str, str] = {
    "n": (
        "every input file of the cohort, unreadable, invalid and duplicate files included: the denominator of"
        " every rate"
    ),
    "crystallm_valid": (
        "inputs that pass CrystaLLM's own validity checks (formula, multiplicity, space group, bond lengths)"
    ),
    "dft_ready": (
        "inputs that pass dftscreen's checks (parse, sensible cell, consistent formula, ordered, no atoms too"
        " close, PAW data for every element); duplicates count"
    ),
    "unique_in_cohort": (
        "dft_ready crystals counted once per cohort: a group of duplicates counts once in each cohort it has "
        "members in; every metric below counts crystals this way"
    ),
    "novel": "unique crystals that match no entry of the known set (the generated structure's novelty)",
    "novel_vs_training": "unique crystals that match no entry of the training set",
    "passed_ml_screen": (
        "unique crystals the ML screen kept for DFT (not screened out; one it screened out and the screen audit "
        "sent to DFT anyway does not count)"
    ),
    "dft_done": "unique crystals whose DFT ended: status ok or not_converged (relaxation hit its step limit)",
    "dft_failed": "unique crystals whose DFT failed",
    "dft_pending": "unique crystals whose DFT has not finished (still to run, or killed)",
    "dft_not_sampled": (
        "unique crystals the DFT budget (dft.max_structures_per_cohort) left out of the cohort's seeded random"
        " sample: no DFT; every DFT rate of the cohort is then an estimate from the sample (the weighted rates)"
    ),
    "stable": (
        "unique crystals whose DFT relaxation finished at most the stable threshold (default 0 eV/atom) above"
        " the hull: the known hull when the run has one, else the generated-only hull"
    ),
    "metastable": (
        "unique crystals whose DFT relaxation finished at most the metastable threshold above the same hull"
        " (default 0.1 eV/atom, MatterGen's and LeMat-GenBench's MSUN threshold)"
    ),
    "sun": (
        "stable, unique and novel crystals (S.U.N.), novelty of the DFT-relaxed structure when the run has "
        "it, as MatterGen counts it"
    ),
    "msun": "metastable, unique and novel crystals (MSUN), with the same novelty as sun",
    "sun_only_here": (
        "S.U.N. crystals of the cohort that no other cohort of the run found (crystals: the run's duplicate"
        " groups, matched across cohorts with check.dedupe)"
    ),
    "msun_only_here": "MSUN crystals of the cohort that no other cohort of the run found (as sun_only_here)",
    "on_target_<name>": "unique crystals whose computed <name> is within the target's tolerance of the requested value",
    "on_target": "unique crystals on target for every target property",
    "sun_on_target": "S.U.N. crystals on target for every target property",
    "<name>_n_compared": "inputs with both a computed and a requested <name>, duplicates included (as in summary.json)",
    "<name>_mae_<unit>": "mean |computed - requested| <name> over those inputs",
    "<name>_bias_<unit>": (
        "mean (computed - requested) <name> over those inputs: above 0, the computed values are too high"
    ),
    "relax_core_hours": (
        "core-hours of the DFT relaxations of the cohort's unique crystals, each crystal's paid once by every"
        " cohort that found it"
    ),
    "properties_core_hours": (
        "core-hours of the DFT property jobs of the cohort's unique crystals, counted the same way"
    ),
    "total_core_hours": "relax_core_hours + properties_core_hours",
    "core_hours_per_sun": "total_core_hours / sun count (empty when the cohort has no S.U.N. crystal)",
    "core_hours_per_sun_on_target": "total_core_hours / sun_on_target count (empty when there is none)",
}

#: What each column of a comparison with the baseline (:func:`compare_with_baseline`) means.
COMPARISON_DEFINITIONS: dict[str, str] = {
    "difference": (
        "cohort rate minus baseline rate, with Newcombe's hybrid score interval (difference_low, "
        "difference_high)"
    ),
    "ratio": (
        "cohort rate / baseline rate, with the adjusted-log interval (ratio_low, ratio_high); empty when the "
        "baseline rate is 0"
    ),
    "fisher_p": "Fisher's exact two-sided p of the 2x2 table (count, n - count) of the cohort and the baseline",
    "holm_p": "fisher_p adjusted by Holm's method over every comparison of the table (all cohorts, all metrics)",
    "significant_after_holm": "holm_p below alpha",
    "detectable_difference": (
        "the smallest difference from the baseline rate, in the observed direction, these two sample sizes "
        "detect with 80 % power at alpha"
    ),
    "n_per_cohort_to_resolve": (
        "structures per cohort (both cohorts that size) that resolve the observed difference with 80 % power "
        "at alpha"
    ),
    "verdict": (
        "higher or lower when the difference's interval excludes 0; else indistinguishable at this sample "
        "size, with about how many more structures per cohort would settle it"
    ),
}

#: The metrics a screen audit weights back: those that need a DFT result (:func:`audit_rates`).
WEIGHTED_METRICS = ("stable", "metastable", "sun", "msun")

#: What each column :func:`audit_rates` adds to a cohort means (``<metric>`` one of
#: :data:`WEIGHTED_METRICS`). Every one is an estimate from a sample: the audit's.
AUDIT_DEFINITIONS: dict[str, str] = {
    "screened_out_unique": "unique crystals of the cohort that the ML screen put above its threshold (audited or not)",
    "screen_audited": "of those, the crystals the screen audit (ml.audit_fraction, a seeded random sample) sent to DFT",
    "screen_audited_stable": "audited crystals that DFT found stable (the screen's misses in the sample)",
    "screen_false_negative_rate": (
        "screen_audited_stable / screen_audited: the share of the crystals the screen throws away that DFT finds "
        "stable, with its Wilson interval (screen_false_negative_low, screen_false_negative_high); an estimate from "
        "the audited sample, empty without one"
    ),
    "<metric>_weighted_rate": (
        "the <metric> rate of every input of the cohort estimated from the DFT results, each weighted by 1 / its "
        "dft_inclusion_probability (Horvitz-Thompson in Hajek's ratio form: an audited crystal stands for every "
        "screened-out crystal like it, a crystal of the DFT budget's sample for every candidate left out), with"
        " the Wilson interval at Kish's effective sample size "
        "(<metric>_weighted_low, <metric>_weighted_high): an estimate from a sample, where <metric>_rate counts "
        "only what reached DFT; empty when the cohort has screened-out crystals but none was audited, or a crystal"
        " of the sample whose DFT has not finished"
    ),
}

#: Rate metrics summary.json carries per cohort (those the table has), and the comparisons and
#: trends it lists; cohorts.json has every metric.
HEADLINE_METRICS = (
    "dft_ready", "unique_in_cohort", "novel", "passed_ml_screen", "dft_done", "stable", "metastable", "sun", "msun",
    "on_target", "sun_on_target",
)  # fmt: skip

#: What each column of a trend (:func:`trend_rows`) means.
TREND_DEFINITIONS: dict[str, str] = {
    "z": (
        "Cochran-Armitage trend statistic of the metric's rate over the ordered factor's values (above 0: the"
        " rate rises with the value)"
    ),
    "p": "its two-sided p",
    "holm_p": "p adjusted by Holm's method over every trend of the table",
}


def _cohort_labels(table: pd.DataFrame) -> pd.Series:
    """Each row's cohort (a categorical column keeps its categories, used ones or not)."""
    if COHORT_COLUMN not in table.columns:
        return pd.Series(ALL, index=table.index, dtype=object)
    labels = table[COHORT_COLUMN]
    if labels.isna().any():
        raise ValueError(f"{int(labels.isna().sum())} rows of the results table have no cohort")
    return labels


def _factor_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c.startswith(COHORT_FACTOR_PREFIX)]


def _group_ids(table: pd.DataFrame) -> pd.Series:
    """Each row's duplicate group: its representative's id (``duplicate_of``) or its own."""
    ids = table["structure_id"].astype(str)
    if "duplicate_of" not in table.columns:
        return ids
    representative = table["duplicate_of"]
    has_one = representative.notna() & (representative.astype(str) != "")
    return ids.where(~has_one, representative.astype(str))


def _representative_values(table: pd.DataFrame, groups: pd.Series, column: pd.Series) -> pd.Series:
    """``column`` of each row's group representative (the row whose id is the group's and is no duplicate)."""
    own = table["status"] != DUPLICATE
    by_id = pd.Series(column[own].to_numpy(), index=table.loc[own, "structure_id"].astype(str).to_numpy())
    by_id = by_id[~by_id.index.duplicated()]
    return pd.Series(groups.map(by_id).to_numpy(), index=table.index)


def _screened_out(table: pd.DataFrame, resolved: pd.Series) -> pd.Series:
    """Rows the ML screen put above its threshold: the screen's verdict (``ml_screened_out``), so that a
    crystal the screen audit sent to DFT anyway did not pass it; status screened_out without that column."""
    screened = resolved == SCREENED_OUT
    if ML_SCREENED_OUT_COLUMN in table.columns:
        screened |= table[ML_SCREENED_OUT_COLUMN] == True  # noqa: E712 (None and NaN are no True)
    return screened


def row_metrics(
    table: pd.DataFrame, *, stable_threshold_eV_per_atom: float, metastable_threshold_eV_per_atom: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per row: (flags, numbers). flags: a boolean column per rate metric, True where the row counts
    for it in its cohort (:data:`DEFINITIONS`); numbers: the row's share of each summed or averaged
    column (target errors, core-hours). Columns appear only when the table has what they need."""
    table = table.reset_index(drop=True)
    labels = _cohort_labels(table)
    status = table["status"].astype(object)
    groups = _group_ids(table)
    ready = dft_ready(table)
    # A duplicate's DFT outcome is its representative's (a missing representative: no outcome).
    is_duplicate = status == DUPLICATE
    resolved = status.where(~is_duplicate, _representative_values(table, groups, status).fillna(DUPLICATE))
    # The first dft_ready row of each (cohort, group) stands for the crystal in that cohort.
    keys = pd.DataFrame({"cohort": labels.astype(str), "group": groups})
    first = np.zeros(len(table), dtype=bool)
    first[ready.to_numpy()] = ~keys[ready.to_numpy()].duplicated().to_numpy()
    unique = pd.Series(first, index=table.index)

    flags: dict[str, pd.Series] = {}
    if "crystallm_valid" in table.columns:
        flags["crystallm_valid"] = table["crystallm_valid"] == True  # noqa: E712 (None and NaN are no True)
    flags["dft_ready"] = ready
    flags["unique_in_cohort"] = unique
    if NOVEL_COLUMN in table.columns:
        flags["novel"] = unique & (table[NOVEL_COLUMN] == True)  # noqa: E712
    if "novel_vs_training" in table.columns:
        flags["novel_vs_training"] = unique & (table["novel_vs_training"] == True)  # noqa: E712
    if ML_STATUS_COLUMN in table.columns:
        flags["passed_ml_screen"] = unique & ~_screened_out(table, resolved)
    flags["dft_done"] = unique & resolved.isin([OK, NOT_CONVERGED])
    flags["dft_failed"] = unique & (resolved == FAILED)
    flags["dft_pending"] = unique & (resolved == NOT_FINISHED)
    if DFT_SAMPLED_COLUMN in table.columns:
        flags["dft_not_sampled"] = unique & (resolved == NOT_SAMPLED)
    hull = hull_column(table)
    if hull is not None:
        outcome = pd.DataFrame({"status": resolved, hull: table[hull]}, index=table.index)
        if "relax_converged" in table.columns:
            outcome["relax_converged"] = table["relax_converged"]
        flags["stable"] = unique & stable(outcome, stable_threshold_eV_per_atom)
        flags["metastable"] = unique & stable(outcome, metastable_threshold_eV_per_atom)
    novelty = sun_novelty_column(table)
    if novelty is not None and hull is not None:
        novel_for_sun = table[novelty] == True  # noqa: E712
        flags["sun"] = flags["stable"] & novel_for_sun
        flags["msun"] = flags["metastable"] & novel_for_sun
    hits = [(name, target_columns(name)[2]) for name in TARGET_UNITS if target_columns(name)[2] in table.columns]
    if hits:
        every_hit = pd.Series(True, index=table.index)
        for name, column in hits:
            hit = table[column] == True  # noqa: E712
            flags[f"on_target_{name}"] = unique & hit
            every_hit &= hit
        flags["on_target"] = unique & every_hit
        if "sun" in flags:
            flags["sun_on_target"] = flags["sun"] & every_hit

    numbers: dict[str, pd.Series] = {}
    for name in TARGET_UNITS:
        _, error_column, _ = target_columns(name)
        if error_column in table.columns:
            numbers[error_column] = pd.to_numeric(table[error_column], errors="coerce")
    for column in STAGE_COST_COLUMNS.values():
        if column in table.columns:
            cost = pd.to_numeric(_representative_values(table, groups, table[column]), errors="coerce")
            numbers[column] = cost.where(unique, np.nan)
    return pd.DataFrame(flags, index=table.index), pd.DataFrame(numbers, index=table.index)


def _cohort_order(labels: pd.Series, factors: pd.DataFrame) -> list[Any]:
    """Categories in their order for a categorical cohort column; else by factor values, then label."""
    if isinstance(labels.dtype, pd.CategoricalDtype):
        return list(labels.cat.categories)
    keys = factors.reset_index(names="_cohort")
    return keys.sort_values([*factors.columns, "_cohort"], na_position="last", kind="stable")["_cohort"].tolist()


def cohort_rates(
    table: pd.DataFrame,
    *,
    stable_threshold_eV_per_atom: float,
    metastable_threshold_eV_per_atom: float,
    alpha: float,
) -> pd.DataFrame:
    """Return one row per cohort: ``cohort``, its factor values, ``n`` and every metric of :data:`DEFINITIONS`.

    A rate metric ``m`` gives ``m_count``, ``m_rate`` (NaN for an empty cohort), ``m_low`` and
    ``m_high`` (Wilson interval, (0, 1) for an empty cohort). A cohort exists when it has an input,
    or when ``cohort`` is categorical and names it among its categories (then it gets a row of 0).
    Factor columns (``cohort_<factor>``) are copied when they hold one value per cohort; a factor
    that varies within a cohort (one of ``pool_over``) is left out.
    """
    table = table.reset_index(drop=True)
    labels = _cohort_labels(table)
    flags, numbers = row_metrics(
        table,
        stable_threshold_eV_per_atom=stable_threshold_eV_per_atom,
        metastable_threshold_eV_per_atom=metastable_threshold_eV_per_atom,
    )
    key = labels.rename(COHORT_COLUMN)
    grouped = flags.groupby(key, observed=False, sort=False)
    counts = grouped.sum().astype(int)
    n = key.groupby(key, observed=False, sort=False).size()
    counts = counts.reindex(n.index, fill_value=0)

    factor_values = {}
    for column in _factor_columns(table):
        by_cohort = table[column].groupby(key, observed=False, sort=False)
        if (by_cohort.nunique(dropna=False) <= 1).all():
            factor_values[column] = by_cohort.first().reindex(n.index)
    factors = pd.DataFrame(factor_values, index=n.index)
    order = _cohort_order(labels, factors)

    out = pd.DataFrame(index=pd.Index(order, name=COHORT_COLUMN))
    for column in factors.columns:
        out[column] = factors[column].reindex(order)
    out["n"] = n.reindex(order).fillna(0).astype(int)
    ns = out["n"].to_numpy()
    for metric in flags.columns:
        count = counts[metric].reindex(order).fillna(0).astype(int).to_numpy()
        low, high = wilson_intervals(count, ns, alpha)
        out[f"{metric}_count"] = count
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"{metric}_rate"] = np.where(ns > 0, count / np.where(ns > 0, ns, 1), np.nan)
        out[f"{metric}_low"] = low
        out[f"{metric}_high"] = high

    number_groups = numbers.groupby(key, observed=False, sort=False)
    for name in TARGET_UNITS:
        _, error_column, _ = target_columns(name)
        if error_column not in numbers.columns:
            continue
        unit = TARGET_UNITS[name]
        errors = numbers[error_column]
        compared = errors.notna().groupby(key, observed=False, sort=False).sum()
        out[f"{name}_n_compared"] = compared.reindex(order).fillna(0).astype(int)
        out[f"{name}_mae_{unit}"] = errors.abs().groupby(key, observed=False, sort=False).mean().reindex(order)
        out[f"{name}_bias_{unit}"] = number_groups[error_column].mean().reindex(order)
    costs = [c for c in STAGE_COST_COLUMNS.values() if c in numbers.columns]
    if costs:
        sums = number_groups[costs].sum(min_count=0).reindex(order).fillna(0.0)
        for column in STAGE_COST_COLUMNS.values():
            out[column] = sums[column] if column in sums.columns else 0.0
        out["total_core_hours"] = sum(out[c] for c in STAGE_COST_COLUMNS.values())
        for metric in ("sun", "sun_on_target"):
            if f"{metric}_count" in out.columns:
                found = out[f"{metric}_count"]
                per = (out["total_core_hours"] / found.where(found > 0)).astype(object)
                out[f"core_hours_per_{metric}"] = per.where(found > 0, None)
    return out.reset_index()


def rate_metrics(rates: pd.DataFrame) -> list[str]:
    """The rate metrics of a :func:`cohort_rates` table, in its column order."""
    return [c[: -len("_count")] for c in rates.columns if c.endswith("_count") and f"{c[:-6]}_rate" in rates.columns]


def _verdict(difference: float | None, low: float, high: float, n_a: int, n_b: int, needed: int | None) -> str:
    if n_a == 0 or n_b == 0:
        return "no comparison: a cohort has no structures"
    if low > 0:
        return "higher"
    if high < 0:
        return "lower"
    if needed is None:
        return (
            "indistinguishable at this sample size "
            "(the two rates are equal: no sample size resolves a difference of 0)"
        )
    more = needed - min(n_a, n_b)
    if more <= 0:
        return (
            "indistinguishable at this sample size (the interval covers 0 although the observed difference "
            f"would be resolved at {needed} structures per cohort)"
        )
    return f"indistinguishable at this sample size (about {more} more structures per cohort would settle it)"


def compare_with_baseline(rates: pd.DataFrame, baseline_label: str, *, alpha: float) -> pd.DataFrame:
    """Return one row per (cohort other than the baseline, rate metric), long format.

    Columns: cohort, baseline, metric, count, n, rate, baseline_count, baseline_n, baseline_rate,
    difference (+ difference_low/high), ratio (+ ratio_low/high), fisher_p, holm_p (Holm over
    every row), significant_after_holm (holm_p < alpha), detectable_difference,
    n_per_cohort_to_resolve and verdict (:data:`COMPARISON_DEFINITIONS`).
    """
    labels = rates[COHORT_COLUMN].astype(str)
    if baseline_label not in set(labels):
        raise ValueError(f"the baseline {baseline_label!r} names no cohort; cohorts: {', '.join(labels)}")
    base = rates[labels == baseline_label].iloc[0]
    others = rates[labels != baseline_label]
    metrics = rate_metrics(rates)
    n_b = int(base["n"])
    rows: list[dict[str, Any]] = []
    for _, cohort in others.iterrows():
        n_a = int(cohort["n"])
        effect = detectable_effect_size(n_a, n_b, alpha=alpha)
        for metric in metrics:
            count_a, count_b = int(cohort[f"{metric}_count"]), int(base[f"{metric}_count"])
            diff = rate_difference(count_a, n_a, count_b, n_b, alpha)
            direction = "down" if diff.difference is not None and diff.difference < 0 else "up"
            rows.append(
                {
                    "cohort": cohort[COHORT_COLUMN],
                    "baseline": baseline_label,
                    "metric": metric,
                    "count": count_a,
                    "n": n_a,
                    "rate": count_a / n_a if n_a else None,
                    "baseline_count": count_b,
                    "baseline_n": n_b,
                    "baseline_rate": count_b / n_b if n_b else None,
                    "difference": diff.difference,
                    "difference_low": diff.low,
                    "difference_high": diff.high,
                    "ratio": diff.ratio,
                    "ratio_low": diff.ratio_low,
                    "ratio_high": diff.ratio_high,
                    "fisher_p": diff.fisher_p,
                    "detectable_difference": (
                        difference_at_effect_size(count_b / n_b, effect, direction) if effect is not None else None
                    ),
                }
            )
    columns = [
        "cohort", "baseline", "metric", "count", "n", "rate", "baseline_count", "baseline_n", "baseline_rate",
        "difference", "difference_low", "difference_high", "ratio", "ratio_low", "ratio_high", "fisher_p",
        "holm_p", "significant_after_holm", "detectable_difference", "n_per_cohort_to_resolve", "verdict",
    ]  # fmt: skip
    if not rows:
        return pd.DataFrame(columns=columns)
    out = pd.DataFrame(rows)
    out["holm_p"] = holm_adjust(out["fisher_p"].tolist())
    out["significant_after_holm"] = out["holm_p"] < alpha
    both = (out["n"] > 0) & (out["baseline_n"] > 0)
    needed = sample_sizes_to_resolve(
        out["rate"].where(both, 0.0).astype(float).to_numpy(),
        out["baseline_rate"].where(both, 0.0).astype(float).to_numpy(),
        alpha=alpha,
    )
    out["n_per_cohort_to_resolve"] = pd.array(
        [int(x) if both_ and np.isfinite(x) else None for x, both_ in zip(needed, both)], dtype="Int64"
    )
    out["verdict"] = [
        _verdict(r.difference, r.difference_low, r.difference_high, r.n, r.baseline_n,
                 None if pd.isna(r.n_per_cohort_to_resolve) else int(r.n_per_cohort_to_resolve))
        for r in out.itertuples()
    ]  # fmt: skip
    return out[columns]


def _numeric_factor(rates: pd.DataFrame, column: str, factor: str) -> pd.Series:
    values = rates[column]
    numbers = pd.to_numeric(values, errors="coerce")
    bad = values[numbers.isna() & values.notna()]
    if len(bad):
        raise ValueError(
            f"ordered factor {factor!r} has values that are not numbers: {', '.join(map(repr, bad.unique()[:5]))}"
        )
    return numbers


def trend_rows(
    rates: pd.DataFrame,
    ordered_factor: str,
    *,
    within: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Return the Cochran-Armitage trend of each rate metric over ``ordered_factor``'s numeric values.

    ``rates`` is a :func:`cohort_rates` table. The trend is tested separately within each level
    (combination of levels) of the factors ``within``; by default every other factor of the
    table, so a trend over the condition value is tested per model, never across models whose
    rates differ for other reasons (pass ``within=()`` to pool every other factor). Cohorts that
    share a score within a stratum are pooled (their counts and n summed); cohorts without a value
    of the factor (NaN: it does not apply to them) are left out, and so is a stratum with fewer
    than two values. One row per (stratum, metric): factor, stratum ("<factor>=<value>, ..." or
    "all"), metric, levels, n, count, z, p (:func:`dftscreen.cohort_stats.trend_test`;
    NaN where undefined), direction ("rises", "falls" or None), holm_p over every row.
    """
    column = f"{COHORT_FACTOR_PREFIX}{ordered_factor}"
    if column not in rates.columns:
        raise ValueError(f"no factor {ordered_factor!r} in the cohort table (columns {COHORT_FACTOR_PREFIX}<factor>)")
    scores = _numeric_factor(rates, column, ordered_factor)
    others = [c for c in rates.columns if c.startswith(COHORT_FACTOR_PREFIX) and c != column]
    strata = others if within is None else [f"{COHORT_FACTOR_PREFIX}{f}" for f in within]
    missing = [c for c in strata if c not in rates.columns]
    if missing:
        raise ValueError(f"no factor column {', '.join(missing)} in the cohort table")
    metrics = list(metrics) if metrics is not None else rate_metrics(rates)
    data = rates.assign(_score=scores)[scores.notna()]
    rows: list[dict[str, Any]] = []
    grouped = data.groupby(strata, dropna=False, sort=True) if strata else [((), data)]
    for level, part in grouped:
        level = level if isinstance(level, tuple) else (level,)
        stratum = ", ".join(f"{c[len(COHORT_FACTOR_PREFIX):]}={v}" for c, v in zip(strata, level)) or ALL
        pooled = part.groupby("_score", sort=True)[["n", *(f"{m}_count" for m in metrics)]].sum()
        if len(pooled) < 2:
            continue
        for metric in metrics:
            counts = pooled[f"{metric}_count"].to_numpy()
            z, p = trend_test(counts, pooled["n"].to_numpy(), pooled.index.to_numpy(dtype=float))
            rows.append(
                {
                    "factor": ordered_factor,
                    "stratum": stratum,
                    "metric": metric,
                    "levels": len(pooled),
                    "n": int(pooled["n"].sum()),
                    "count": int(counts.sum()),
                    "z": z,
                    "p": p,
                    "direction": None if not np.isfinite(z) or z == 0 else ("rises" if z > 0 else "falls"),
                }
            )
    columns = ["factor", "stratum", "metric", "levels", "n", "count", "z", "p", "direction", "holm_p"]
    if not rows:
        return pd.DataFrame(columns=columns)
    out = pd.DataFrame(rows)
    out["holm_p"] = holm_adjust(out["p"].tolist())
    return out[columns]


def _audit_inputs(table: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series] | None:
    """Per row: (screened out, audited, inclusion probability); ``None`` when the table has no
    inclusion probabilities (neither the ML screen nor a DFT budget ran)."""
    if DFT_INCLUSION_PROBABILITY_COLUMN not in table.columns:
        return None
    no = pd.Series(False, index=table.index)
    screened = table[ML_SCREENED_OUT_COLUMN] == True if ML_SCREENED_OUT_COLUMN in table.columns else no  # noqa: E712
    audited = screened & (table[ML_AUDITED_COLUMN] == True) if ML_AUDITED_COLUMN in table.columns else no  # noqa: E712
    probability = pd.to_numeric(table[DFT_INCLUSION_PROBABILITY_COLUMN], errors="coerce")
    return screened, audited, probability


def _audit_row(flags: pd.DataFrame, screened: pd.Series, audited: pd.Series, pi: pd.Series, alpha: float) -> dict:
    """The audit columns of one cohort (its rows of ``flags`` and the three per-row series)."""
    unique = flags["unique_in_cohort"]
    unique_screened, unique_audited = unique & screened, unique & audited
    row: dict[str, Any] = {
        "screened_out_unique": int(unique_screened.sum()),
        "screen_audited": int(unique_audited.sum()),
    }
    if "stable" in flags.columns:
        misses = int((unique_audited & flags["stable"]).sum())
        fn = screen_false_negative_rate(misses, row["screen_audited"], alpha)
        row.update(screen_audited_stable=misses, screen_false_negative_rate=fn["rate"],
                   screen_false_negative_low=fn["low"], screen_false_negative_high=fn["high"])  # fmt: skip
    # The sample: every row but the screened-out crystals the audit did not send to DFT and the
    # candidates the DFT budget left out; a crystal in it weighs 1 / its inclusion probability.
    left_out = flags["dft_not_sampled"] if "dft_not_sampled" in flags.columns else False
    sampled = ~((unique_screened & ~unique_audited) | left_out)
    weights_known = row["screen_audited"] > 0 or row["screened_out_unique"] == 0
    # A crystal of the sample whose DFT has not finished is no 0: no estimate until it has.
    if "dft_pending" in flags.columns and bool((flags["dft_pending"] & sampled).any()):
        weights_known = False
    probability = pi.where(unique & pi.notna(), 1.0)[sampled].to_numpy(dtype=float)
    for metric in WEIGHTED_METRICS:
        if metric not in flags.columns:
            continue
        estimate = weighted_rate(flags[metric][sampled].to_numpy(dtype=float), probability, alpha)
        usable = weights_known and estimate.rate is not None
        row[f"{metric}_weighted_rate"] = estimate.rate if usable else None
        row[f"{metric}_weighted_low"] = estimate.low if usable else None
        row[f"{metric}_weighted_high"] = estimate.high if usable else None
    return row


def audit_rates(
    table: pd.DataFrame,
    *,
    stable_threshold_eV_per_atom: float,
    metastable_threshold_eV_per_atom: float,
    alpha: float,
) -> pd.DataFrame | None:
    """Return one row per cohort (indexed by it) with the columns of :data:`AUDIT_DEFINITIONS`.

    The DFT-dependent rates (:data:`WEIGHTED_METRICS`) estimated for every input of the cohort
    from the structures that reached DFT, each weighted by 1 / ``dft_inclusion_probability``
    (:func:`dftscreen.cohort_stats.weighted_rate`): rows that never needed DFT (invalid,
    duplicates of a crystal the cohort counts already) and crystals past the screen weigh 1, an
    audited crystal 1 / ``ml.audit_fraction``, and the screened-out crystals the audit left out
    are represented by the audited ones. With a DFT budget each sampled candidate also weighs
    candidates / sampled of its cohort (its ``dft_inclusion_probability`` has both factors) and
    stands for the candidates the budget left out. A crystal counts as in :func:`row_metrics` (a
    duplicate carries its representative's screen, audit, sample and DFT outcome). ``None`` when
    the table has no inclusion probabilities (no ML stage and no budget).
    """
    table = table.reset_index(drop=True)
    inputs = _audit_inputs(table)
    if inputs is None:
        return None
    screened, audited, probability = inputs
    flags, _ = row_metrics(
        table,
        stable_threshold_eV_per_atom=stable_threshold_eV_per_atom,
        metastable_threshold_eV_per_atom=metastable_threshold_eV_per_atom,
    )
    labels = _cohort_labels(table)
    rows = {}
    for cohort, index in labels.groupby(labels, observed=False, sort=False).groups.items():
        rows[cohort] = _audit_row(flags.loc[index], screened[index], audited[index], probability[index], alpha)
    return pd.DataFrame.from_dict(rows, orient="index")


def compare_with_baselines(rates: pd.DataFrame, spec: CohortSpec, *, alpha: float) -> pd.DataFrame | None:
    """Compare each cohort with its baseline (:func:`dftscreen.cohorts.baseline_label`); ``None`` without one.

    A baseline naming every factor is one cohort that every other is compared with; one naming
    some factors is compared with the cohorts that share its other factors' values (each model
    with the baseline model at the same condition). Holm's adjustment runs over every row of
    every baseline at once, as :func:`compare_with_baseline` does over one.
    """
    if not spec.baseline:
        return None
    labels = rates[COHORT_COLUMN].astype(str)
    groups: dict[str, list[str]] = {}
    for index, label in labels.items():
        values = {f: rates.at[index, c] for f in spec.factors if (c := f"{COHORT_FACTOR_PREFIX}{f}") in rates}
        base = baseline_label(spec, values)
        if base is not None and base != label and base in set(labels):
            groups.setdefault(base, []).append(label)
    parts = [
        compare_with_baseline(rates[labels.isin([base, *members])], base, alpha=alpha)
        for base, members in groups.items()
    ]
    if not parts:
        return None
    out = pd.concat(parts, ignore_index=True)
    out["holm_p"] = holm_adjust(out["fisher_p"].tolist())
    out["significant_after_holm"] = out["holm_p"] < alpha
    return out


def ordered_trends(rates: pd.DataFrame, ordered: Sequence[str]) -> pd.DataFrame | None:
    """:func:`trend_rows` of every ordered factor that has a column in ``rates``, Holm over all of them."""
    parts = [trend_rows(rates, f) for f in ordered if f"{COHORT_FACTOR_PREFIX}{f}" in rates.columns]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return None
    out = pd.concat(parts, ignore_index=True)
    out["holm_p"] = holm_adjust(out["p"].tolist())
    return out


def cohort_overlap(
    table: pd.DataFrame,
    *,
    stable_threshold_eV_per_atom: float,
    metastable_threshold_eV_per_atom: float,
    groups: pd.Series | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The same useful crystal found by several cohorts (issue 30, item 5).

    Crystals are the run's duplicate groups (the check's StructureMatcher with ``check.dedupe``,
    across every cohort), or ``groups``: each row's crystal, in the table's row order (several
    runs' groups matched across runs, :func:`dftscreen.compare_runs.cross_run_groups`). Returns,
    per cohort, ``<metric>_only_here`` (S.U.N. and MSUN crystals no other cohort found), and for
    the run the union: its unique S.U.N. (MSUN) crystals, the DFT core-hours the run spent (each
    crystal's DFT once) and the unique S.U.N. per core-hour.
    Empty without S.U.N. (no known set or no hull).
    """
    flags, _ = row_metrics(
        table,
        stable_threshold_eV_per_atom=stable_threshold_eV_per_atom,
        metastable_threshold_eV_per_atom=metastable_threshold_eV_per_atom,
    )
    table = table.reset_index(drop=True)
    labels = _cohort_labels(table).astype(str)
    groups = _group_ids(table) if groups is None else pd.Series(groups.to_numpy(), index=table.index).astype(str)
    per_cohort = pd.DataFrame(index=pd.Index(sorted(set(labels)), name=COHORT_COLUMN))
    union: dict[str, Any] = {}
    cost = pd.to_numeric(table.get("total_core_hours"), errors="coerce") if "total_core_hours" in table else None
    # Duplicates' cost columns are empty: summing every row counts each crystal's DFT once.
    union["dft_core_hours"] = float(cost.sum()) if cost is not None else None
    for metric in ("sun", "msun"):
        if metric not in flags:
            continue
        found = pd.DataFrame({"cohort": labels, "group": groups})[flags[metric].to_numpy()]
        cohorts_per_crystal = found.groupby("group")["cohort"].nunique()
        only = found[found["group"].map(cohorts_per_crystal) == 1].groupby("cohort").size()
        per_cohort[f"{metric}_only_here"] = only.reindex(per_cohort.index, fill_value=0).astype(int)
        union[f"unique_{metric}"] = int(found["group"].nunique())
        hours = union["dft_core_hours"]
        union[f"unique_{metric}_per_core_hour"] = union[f"unique_{metric}"] / hours if hours else None
    return per_cohort, union


def cohort_report_data(
    table: pd.DataFrame, cohorts_config: Mapping[str, Any] | None, *, audit_fraction: float = 0.0
) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    """Return (rates, comparisons, trends) of a run's results table with its config section ``cohorts``.

    rates: :func:`cohort_rates` at the section's thresholds and alpha, with the columns of
    :func:`audit_rates` when the screen was audited (``audit_fraction`` > 0, ``ml.audit_fraction``);
    comparisons: :func:`compare_with_baselines` (``None`` without a baseline); trends: the
    Cochran-Armitage trends over each ``ordered`` factor (``None`` without one). One cohort
    ("all") without a section.
    """
    spec = CohortSpec.from_config(cohorts_config)
    settings = {
        "stable_threshold_eV_per_atom": spec.stable_threshold_eV_per_atom,
        "metastable_threshold_eV_per_atom": spec.metastable_threshold_eV_per_atom,
        "alpha": spec.alpha,
    }
    rates = cohort_rates(table, **settings)
    if audit_fraction > 0 or DFT_SAMPLED_COLUMN in table.columns:
        audit = audit_rates(table, **settings)
        if audit is not None:
            rates = rates.join(audit, on=COHORT_COLUMN)
    comparisons = compare_with_baselines(rates, spec, alpha=spec.alpha)
    return rates, comparisons, ordered_trends(rates, spec.ordered)


def _rate_entry(row: Mapping[str, Any], metric: str) -> dict[str, Any]:
    return {part: row.get(f"{metric}_{part}") for part in ("count", "rate", "low", "high")}


def _cohort_entry(row: Mapping[str, Any], metrics: Sequence[str]) -> dict[str, Any]:
    """One cohort of :func:`cohort_summary`: factors, n, headline rates, cost, the audit's estimates."""
    entry: dict[str, Any] = {
        "factors": {c[len(COHORT_FACTOR_PREFIX):]: row[c] for c in row if c.startswith(COHORT_FACTOR_PREFIX)},
        "n": row["n"],
        "rates": {metric: _rate_entry(row, metric) for metric in metrics},
    }
    for column in ("total_core_hours", "core_hours_per_sun", "core_hours_per_sun_on_target"):
        if column in row:
            entry[column] = row[column]
    if "screen_audited" in row:
        weighted = {
            m: {part: row[f"{m}_weighted_{part}"] for part in ("rate", "low", "high")}
            for m in WEIGHTED_METRICS
            if f"{m}_weighted_rate" in row
        }
        entry["screen_audit"] = {
            "estimates_from_a_sample": True,
            "screened_out_unique": row["screened_out_unique"],
            "audited": row["screen_audited"],
            "false_negative": {
                "count": row.get("screen_audited_stable"),
                "rate": row.get("screen_false_negative_rate"),
                "low": row.get("screen_false_negative_low"),
                "high": row.get("screen_false_negative_high"),
            },
            "weighted_rates": weighted,
        }
    return entry


def cohort_summary(
    rates: pd.DataFrame,
    comparisons: pd.DataFrame | None,
    trends: pd.DataFrame | None,
    *,
    alpha: float,
    audit_fraction: float = 0.0,
) -> dict[str, Any]:
    """The compact ``cohorts`` section of summary.json (cohorts.csv and cohorts.json have everything).

    Per cohort the headline counts, rates and intervals (:data:`HEADLINE_METRICS`), its cost and,
    with a screen audit, the weighted rates and the screen's false-negative rate (flagged as
    estimates from a sample); the headline comparisons with their verdicts, and the trends.
    """
    metrics = [m for m in HEADLINE_METRICS if f"{m}_count" in rates.columns]
    section: dict[str, Any] = {
        "n_cohorts": len(rates),
        "alpha": alpha,
        "cohorts": {str(row[COHORT_COLUMN]): _cohort_entry(row, metrics) for row in _records(rates)},
        "baselines": [],
        "comparisons": [],
        "trends": [],
    }
    if audit_fraction > 0:
        section["screen_audit_fraction"] = audit_fraction
    if comparisons is not None and not comparisons.empty:
        shown = comparisons[comparisons["metric"].isin(metrics)]
        keys = ["cohort", "baseline", "metric", "difference", "difference_low", "difference_high", "holm_p", "verdict"]
        section["baselines"] = sorted({str(b) for b in comparisons["baseline"]})
        section["comparisons"] = _records(shown[keys])
    if trends is not None and not trends.empty:
        keys = ["factor", "stratum", "metric", "z", "p", "holm_p", "direction"]
        section["trends"] = _records(trends[trends["metric"].isin(metrics)][keys])
    return section


def _budget_settings(dft_budget: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{"dft_budget": ...}`` when ``dft.max_structures_per_cohort`` is set (config section ``dft``), else ``{}``."""
    if not dft_budget or dft_budget.get("max_structures_per_cohort") is None:
        return {}
    return {
        "dft_budget": {
            "max_structures_per_cohort": int(dft_budget["max_structures_per_cohort"]),
            "budget_seed": int(dft_budget.get("budget_seed", 0)),
            "note": (
                "each cohort's DFT rates are estimates from a seeded random sample of its DFT candidates; "
                "<metric>_weighted_rate weights them back to every input"
            ),
        }
    }


def _records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    if frame is None:
        return []
    return [{k: (None if v is pd.NA else v) for k, v in row.items()} for row in frame.to_dict("records")]


def write_cohort_outputs(
    rates: pd.DataFrame,
    comparisons: pd.DataFrame | None,
    trends: pd.DataFrame | None,
    csv_path: str | os.PathLike[str],
    json_path: str | os.PathLike[str],
    settings: Mapping[str, Any] | None = None,
    *,
    conditioning: Mapping[str, Any] | None = None,
) -> None:
    """Write cohorts.csv (one row per cohort) and a JSON file with the definitions, the cohorts,
    the comparisons with the baseline and the trends, each atomically (:mod:`dftscreen.io`).

    ``settings`` (thresholds, alpha, the audit fraction ...) are written as they are under
    ``settings``; the audit's definitions are added when the rates have its columns;
    ``conditioning`` (:func:`dftscreen.conditioning.conditioning_json`) under ``conditioning``."""
    atomic_write_with(csv_path, lambda path: rates.to_csv(path, index=False))
    data: dict[str, Any] = {
        "definitions": DEFINITIONS,
        "comparison_definitions": COMPARISON_DEFINITIONS,
        "trend_definitions": TREND_DEFINITIONS,
        "cohorts": _records(rates),
        "comparisons": _records(comparisons),
        "trends": _records(trends),
    }
    if "screen_audited" in rates.columns:
        data["audit_definitions"] = AUDIT_DEFINITIONS
    if settings is not None:
        data["settings"] = dict(settings)
    if conditioning is not None:
        data["conditioning"] = dict(conditioning)
    atomic_write_json(json_path, data)


def write_run_cohorts(
    table: pd.DataFrame,
    cohorts_config: Mapping[str, Any] | None,
    csv_path: str | os.PathLike[str],
    json_path: str | os.PathLike[str],
    *,
    audit_fraction: float = 0.0,
    dft_budget: Mapping[str, Any] | None = None,
    targets_config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The aggregate job's cohorts: write cohorts.csv and cohorts.json, return summary.json's ``cohorts``.

    :func:`cohort_report_data` of the results table with the config section ``cohorts``
    (``audit_fraction``: ``ml.audit_fraction`` when the ML screen ran, else 0); one cohort
    ("all", one row) without a section. cohorts.json records the settings the numbers used.
    With the config section ``targets`` (``targets_config``) and requested values in the table,
    cohorts.json and the section also get ``conditioning`` (:mod:`dftscreen.conditioning`).
    """
    spec = CohortSpec.from_config(cohorts_config)
    rates, comparisons, trends = cohort_report_data(table, cohorts_config, audit_fraction=audit_fraction)
    # Once per run: the per-cohort columns (sun_only_here, ...) and the union for summary.json.
    overlap, union = cohort_overlap(
        table,
        stable_threshold_eV_per_atom=spec.stable_threshold_eV_per_atom,
        metastable_threshold_eV_per_atom=spec.metastable_threshold_eV_per_atom,
    )
    if not overlap.columns.empty:
        rates = rates.join(overlap, on=COHORT_COLUMN)
    settings = {
        "stable_threshold_eV_per_atom": spec.stable_threshold_eV_per_atom,
        "metastable_threshold_eV_per_atom": spec.metastable_threshold_eV_per_atom,
        "alpha": spec.alpha,
        "baseline": dict(spec.baseline),
        "ordered": list(spec.ordered),
        "pool_over": list(spec.pool_over),
        "screen_audit_fraction": audit_fraction,
        **_budget_settings(dft_budget),
    }
    conditioned = conditioning_data(table, targets_config, spec)
    conditioning = conditioning_json(conditioned, alpha=spec.alpha) if conditioned else None
    write_cohort_outputs(rates, comparisons, trends, csv_path, json_path, settings=settings, conditioning=conditioning)
    section = cohort_summary(rates, comparisons, trends, alpha=spec.alpha, audit_fraction=audit_fraction)
    section["union"] = union
    if conditioned:
        section["conditioning"] = conditioning_summary(conditioned)
    section.update(_budget_settings(dft_budget))
    # Where every metric, comparison and definition is (summary.json lies beside it).
    return {"details": Path(json_path).name, **section}
