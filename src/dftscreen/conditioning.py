"""Conditioning (issue 30, item 6): the computed property against the requested one, per condition value.

A property-conditioned generator (CrystaLLM-pi) is asked for a value of a target property
(config ``targets``: a band gap of 1.8 eV, ...); the results table holds the requested value
(``target_<name>_<unit>``, :mod:`dftscreen.targets`) and the computed one. For each target
property with requested values, per cohort and condition value (the requested value: a
cohort asked for several values is split by value), this module gives

* the points (:func:`conditioning_points`): every input's requested and computed value and
  where the computed one comes from: the DFT column the target is compared with
  (:data:`dftscreen.targets.TARGET_KINDS`), else the ML model's value of the same quantity
  (``ml_formation_energy_eV_per_atom``, ``ml_e_above_hull_*``; a band gap has none), labelled
  ``ML``;
* the hit rate (:func:`condition_rows`): inputs whose computed value lies within the target's
  tolerance of the requested value, over every input of the cohort asked for that value;
* the baseline in the same target window: the share of every input of the baseline cohort
  (``cohorts.baseline``, :func:`dftscreen.cohorts.baseline_label`), which asked for nothing,
  whose computed value lands in [value - tolerance, value + tolerance] by chance; and the lift,
  hit rate minus that window rate, with Newcombe's interval and the rate ratio
  (:func:`dftscreen.cohort_stats.rate_difference`).

Pure functions on the results table (pandas), no I/O; :func:`conditioning_data` is what the
aggregate job computes (:func:`dftscreen.cohort_table.write_run_cohorts` writes it into
cohorts.json), :data:`CONDITIONING_DEFINITIONS` states each column once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dftscreen.cohort_stats import ALPHA, rate_difference, wilson_intervals
from dftscreen.cohorts import ALL_COHORT, CohortSpec, baseline_label
from dftscreen.columns import (
    COHORT_COLUMN,
    E_HULL_COLUMN,
    E_HULL_COLUMN_NO_PHASES,
    FORMATION_ENERGY_COLUMN,
    ML_E_HULL_COLUMN,
    ML_E_HULL_COLUMN_NO_PHASES,
    ML_FORMATION_COLUMN,
    TARGET_UNITS,
    cohort_factor_column,
    target_columns,
)
from dftscreen.targets import TARGET_KINDS

#: Where a computed value comes from.
DFT = "DFT"
ML = "ML"

#: The ML column of the same quantity as a DFT column (the ML model's own references and hull).
ML_COUNTERPART: dict[str, str] = {
    FORMATION_ENERGY_COLUMN: ML_FORMATION_COLUMN,
    E_HULL_COLUMN: ML_E_HULL_COLUMN,
    E_HULL_COLUMN_NO_PHASES: ML_E_HULL_COLUMN_NO_PHASES,
}

#: Condition values are grouped after rounding to this many decimals (a value read back from
#: Parquet or JSON text is the same condition).
CONDITION_DECIMALS = 9

#: Rows per property that summary.json lists (cohorts.json has them all).
MAX_SUMMARY_ROWS = 100

#: What each column of a property's conditioning rows means, one sentence each (``<unit>``: the
#: property's unit; "computed": the DFT value, else the ML value of the same quantity).
CONDITIONING_DEFINITIONS: dict[str, str] = {
    "condition_value": "the requested value of the property (target_<name>_<unit>) the cohort's inputs were asked for",
    "n": (
        "every input of the cohort asked for this value, unreadable, invalid, duplicate and not yet computed"
        " inputs included: the denominator of the hit rate"
    ),
    "n_computed": "those of the n inputs with a computed value (DFT, else ML)",
    "n_ml": "those of n_computed whose value is the ML model's, as no DFT value exists",
    "hits": (
        "inputs whose computed value lies in [condition_value - tolerance, condition_value + tolerance]; an input"
        " without a computed value is no hit, and each input counts, a duplicate with its representative's value"
    ),
    "hits_ml": "those of the hits that rest on an ML value",
    "hit_rate": "hits / n, with its Wilson interval (hit_low, hit_high) at the cohorts' alpha",
    "baseline": "the baseline cohort (cohorts.baseline) this cohort is compared with; empty without one",
    "baseline_n": "every input of the baseline cohort, whatever it asked for: the denominator of its window rate",
    "baseline_in_window": (
        "baseline inputs whose computed value lies in the same window [condition_value - tolerance,"
        " condition_value + tolerance], of them baseline_in_window_ml on an ML value"
    ),
    "baseline_window_rate": (
        "baseline_in_window / baseline_n, with its Wilson interval (baseline_window_low, baseline_window_high):"
        " how often the baseline lands in the window without being asked"
    ),
    "lift": (
        "hit_rate - baseline_window_rate, with Newcombe's hybrid score interval (lift_low, lift_high); empty when"
        " either cohort has no input"
    ),
    "lift_ratio": (
        "hit_rate / baseline_window_rate, with the adjusted-log interval (lift_ratio_low, lift_ratio_high);"
        " empty when the window rate is 0"
    ),
}

#: The columns of :func:`condition_rows` before the baseline's.
RATE_COLUMNS = [
    COHORT_COLUMN, "condition_value", "n", "n_computed", "n_ml", "hits", "hits_ml", "hit_rate", "hit_low", "hit_high",
]  # fmt: skip
#: The baseline's columns, present when a baseline is configured.
BASELINE_COLUMNS = [
    "baseline", "baseline_n", "baseline_n_computed", "baseline_in_window", "baseline_in_window_ml",
    "baseline_window_rate", "baseline_window_low", "baseline_window_high",
    "lift", "lift_low", "lift_high", "lift_ratio", "lift_ratio_low", "lift_ratio_high",
]  # fmt: skip


@dataclass(frozen=True)
class PropertyConditioning:
    """One target property's conditioning: its unit, tolerance (in that unit), columns, points and rows."""

    name: str
    unit: str
    tolerance: float
    dft_column: str | None
    ml_column: str | None
    points: pd.DataFrame
    rows: pd.DataFrame


def computed_columns(columns: Sequence[str], name: str) -> tuple[str | None, str | None]:
    """(DFT column, ML column) holding target ``name``'s computed value among ``columns``; ``None``: absent.

    The DFT column is the first of the target's computed columns the table has, as
    :func:`dftscreen.targets.add_target_columns` chooses it; the ML column is its ML counterpart
    (:data:`ML_COUNTERPART`), never one against another hull.
    """
    present = set(columns)
    candidates = TARGET_KINDS[name].computed_columns
    dft = next((c for c in candidates if c in present), None)
    if dft is not None:
        ml = ML_COUNTERPART.get(dft)
        return dft, ml if ml in present else None
    return None, next((ML_COUNTERPART[c] for c in candidates if ML_COUNTERPART.get(c) in present), None)


def _numbers(table: pd.DataFrame, column: str | None) -> pd.Series:
    if column is None or column not in table.columns:
        return pd.Series(np.nan, index=table.index, dtype=float)
    return pd.to_numeric(table[column], errors="coerce").astype(float)


def _cohort_labels(table: pd.DataFrame) -> pd.Series:
    """Each row's cohort as text (``all`` without a ``cohort`` column)."""
    if COHORT_COLUMN not in table.columns:
        return pd.Series(ALL_COHORT, index=table.index, dtype=object)
    return table[COHORT_COLUMN].astype(str)


def conditioning_points(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """One row per input: ``cohort``, ``requested`` and ``computed`` (target ``name``'s unit, NaN: none) and
    ``source`` (``DFT``, ``ML`` where only the ML model gives the value, None without a value)."""
    dft_column, ml_column = computed_columns(list(table.columns), name)
    dft, ml = _numbers(table, dft_column), _numbers(table, ml_column)
    from_ml = dft.isna() & ml.notna()
    source = np.where(dft.notna(), DFT, np.where(from_ml, ML, None))
    return pd.DataFrame(
        {
            COHORT_COLUMN: _cohort_labels(table),
            "requested": _numbers(table, target_columns(name)[0]),
            "computed": dft.where(~from_ml, ml),
            "source": pd.Series(source, index=table.index, dtype=object),
        }
    ).reset_index(drop=True)


def cohort_baselines(table: pd.DataFrame, spec: CohortSpec) -> dict[str, str | None]:
    """Cohort -> the label of its baseline cohort (:func:`dftscreen.cohorts.baseline_label` of its first row's
    factor values); ``None`` without a baseline and for the baseline cohort itself."""
    labels = _cohort_labels(table)
    if not spec.baseline or table.empty:
        return dict.fromkeys(labels.unique().tolist())
    columns = {f: cohort_factor_column(f) for f in spec.factors if cohort_factor_column(f) in table.columns}
    first = table[list(columns.values())].groupby(labels.to_numpy(), sort=False).first()
    found: dict[str, str | None] = {}
    for cohort, row in first.iterrows():
        base = baseline_label(spec, {f: row[c] for f, c in columns.items()})
        found[str(cohort)] = base if base != str(cohort) else None
    for cohort in labels.unique():  # a table without factor columns
        found.setdefault(str(cohort), None)
    return found


def _in_window(values: np.ndarray, centres: np.ndarray, tolerance: float) -> np.ndarray:
    """How many of ``values`` lie in [centre - tolerance, centre + tolerance], per centre (NaN values never)."""
    ordered = np.sort(values[np.isfinite(values)])
    low = np.searchsorted(ordered, centres - tolerance, side="left")
    high = np.searchsorted(ordered, centres + tolerance, side="right")
    return (high - low).astype(int)


def _hit_counts(points: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Per (cohort, condition value) of the inputs that asked for one: n, n_computed, n_ml, hits, hits_ml."""
    asked = points[points["requested"].notna()]
    requested, computed = asked["requested"], asked["computed"]
    hit = (computed >= requested - tolerance) & (computed <= requested + tolerance)
    ml = asked["source"] == ML
    frame = pd.DataFrame(
        {
            COHORT_COLUMN: asked[COHORT_COLUMN],
            "condition_value": requested.round(CONDITION_DECIMALS),
            "n": 1,
            "n_computed": computed.notna().astype(int),
            "n_ml": ml.astype(int),
            "hits": hit.astype(int),
            "hits_ml": (hit & ml).astype(int),
        }
    )
    order = {cohort: i for i, cohort in enumerate(dict.fromkeys(points[COHORT_COLUMN]))}
    counts = frame.groupby([COHORT_COLUMN, "condition_value"], sort=False).sum().reset_index()
    counts = counts.assign(_order=counts[COHORT_COLUMN].map(order))
    return counts.sort_values(["_order", "condition_value"], kind="stable").drop(columns="_order")


def _window_counts(
    points: pd.DataFrame, rows: pd.DataFrame, baseline: pd.Series, tolerance: float
) -> dict[str, np.ndarray]:
    """Per row of ``rows``: its baseline's n, n with a computed value, and inputs (ML ones) in its window."""
    counts = {k: np.zeros(len(rows), dtype=int) for k in ("n", "n_computed", "in_window", "in_window_ml")}
    centres = rows["condition_value"].to_numpy(dtype=float)
    for label in baseline.dropna().unique():
        at = (baseline == label).to_numpy()
        members = points[points[COHORT_COLUMN] == label]
        values, from_ml = members["computed"].to_numpy(dtype=float), (members["source"] == ML).to_numpy()
        counts["n"][at] = len(members)
        counts["n_computed"][at] = int(np.isfinite(values).sum())
        counts["in_window"][at] = _in_window(values, centres[at], tolerance)
        counts["in_window_ml"][at] = _in_window(values[from_ml], centres[at], tolerance)
    return counts


def _baseline_columns(
    points: pd.DataFrame, rows: pd.DataFrame, baselines: Mapping[str, str | None], tolerance: float, alpha: float
) -> pd.DataFrame:
    """The columns of :data:`BASELINE_COLUMNS` for ``rows``: the baseline's window counts and rate, the lift.

    Rows of a cohort without a baseline have them empty (None). One :func:`rate_difference` per row
    with a baseline (a loop over cohorts x condition values).
    """
    baseline = rows[COHORT_COLUMN].map(lambda cohort: baselines.get(cohort)).astype(object)
    compared = baseline.notna().to_numpy()
    counts = _window_counts(points, rows, baseline, tolerance)
    low, high = wilson_intervals(counts["in_window"], counts["n"], alpha)
    n = counts["n"]
    rate = np.where(n > 0, counts["in_window"] / np.where(n > 0, n, 1), np.nan)
    lifts = [
        rate_difference(int(hits), int(n_a), int(inside), int(n_b), alpha) if use else None
        for hits, n_a, inside, n_b, use in zip(rows["hits"], rows["n"], counts["in_window"], n, compared)
    ]
    parts = ("difference", "low", "high", "ratio", "ratio_low", "ratio_high")
    lift = {part: [np.nan if x is None or getattr(x, part) is None else getattr(x, part) for x in lifts]
            for part in parts}  # fmt: skip
    columns = {
        "baseline": baseline.to_numpy(),
        "baseline_n": counts["n"],
        "baseline_n_computed": counts["n_computed"],
        "baseline_in_window": counts["in_window"],
        "baseline_in_window_ml": counts["in_window_ml"],
        "baseline_window_rate": rate,
        "baseline_window_low": low,
        "baseline_window_high": high,
        **{f"lift{'' if part == 'difference' else '_' + part}": values for part, values in lift.items()},
    }
    out = pd.DataFrame(columns, index=rows.index)
    out = out.astype({c: "Int64" for c in BASELINE_COLUMNS[1:5]} | {c: float for c in BASELINE_COLUMNS[5:]})
    out.loc[~compared, BASELINE_COLUMNS[1:]] = np.nan
    return out[BASELINE_COLUMNS]


def condition_rows(
    points: pd.DataFrame,
    tolerance: float,
    *,
    baselines: Mapping[str, str | None] | None = None,
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """One row per (cohort, condition value) of the inputs that asked for a value (:data:`CONDITIONING_DEFINITIONS`).

    ``points``: :func:`conditioning_points`; ``tolerance`` in the property's unit; ``baselines``: cohort ->
    its baseline's label (:func:`cohort_baselines`). The baseline columns (:data:`BASELINE_COLUMNS`) are
    there when some cohort has a baseline, empty in the rows of a cohort without one; a baseline cohort
    with no input gives no window rate and no lift.
    """
    counts = _hit_counts(points, tolerance).reset_index(drop=True)
    n = counts["n"].to_numpy()
    hits = counts["hits"].to_numpy()
    low, high = wilson_intervals(hits, n, alpha)
    counts["hit_rate"] = hits / np.where(n > 0, n, 1)
    counts["hit_low"], counts["hit_high"] = low, high
    rows = counts[RATE_COLUMNS]
    if not baselines or not any(baselines.values()):
        return rows
    return pd.concat([rows, _baseline_columns(points, rows, baselines, tolerance, alpha)], axis=1)


def target_tolerance(name: str, spec: Mapping[str, Any] | None) -> float:
    """The tolerance of target ``name`` (its unit): the configured one, else the target's default."""
    return float((spec or {}).get("tolerance", TARGET_KINDS[name].default_tolerance))


def conditioned_properties(table: pd.DataFrame, targets_config: Mapping[str, Any] | None) -> list[str]:
    """The configured target properties whose requested-value column holds a value."""
    names = []
    for name in (targets_config or {}).get("properties") or {}:
        if name not in TARGET_KINDS:
            continue
        column = target_columns(name)[0]
        if column in table.columns and pd.to_numeric(table[column], errors="coerce").notna().any():
            names.append(name)
    return names


def conditioning_data(
    table: pd.DataFrame, targets_config: Mapping[str, Any] | None, spec: CohortSpec
) -> list[PropertyConditioning]:
    """Each conditioned property's :class:`PropertyConditioning` (the config sections ``targets`` and ``cohorts``)."""
    properties = (targets_config or {}).get("properties") or {}
    baselines = cohort_baselines(table, spec)
    found = []
    for name in conditioned_properties(table, targets_config):
        tolerance = target_tolerance(name, properties.get(name))
        points = conditioning_points(table, name)
        rows = condition_rows(points, tolerance, baselines=baselines, alpha=spec.alpha)
        dft_column, ml_column = computed_columns(list(table.columns), name)
        found.append(PropertyConditioning(name, TARGET_UNITS[name], tolerance, dft_column, ml_column, points, rows))
    return found


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts, NaN and pandas' NA as None."""
    return [
        {k: (None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else v) for k, v in row.items()}
        for row in frame.astype(object).to_dict("records")
    ]


def conditioning_json(found: Sequence[PropertyConditioning], *, alpha: float) -> dict[str, Any]:
    """cohorts.json's ``conditioning``: the definitions, alpha and per property its unit, tolerance, columns
    and every row."""
    return {
        "definitions": CONDITIONING_DEFINITIONS,
        "alpha": alpha,
        "properties": {
            p.name: {
                "unit": p.unit,
                "tolerance": p.tolerance,
                "dft_column": p.dft_column,
                "ml_column": p.ml_column,
                "rows": _records(p.rows),
            }
            for p in found
        },
    }


def conditioning_summary(found: Sequence[PropertyConditioning], max_rows: int = MAX_SUMMARY_ROWS) -> dict[str, Any]:
    """summary.json's compact part: per property its unit, tolerance and up to ``max_rows`` rows of hit
    rate, baseline window rate and lift with their intervals."""
    keys = ["cohort", "condition_value", "n", "hits", "hit_rate", "hit_low", "hit_high", "baseline",
            "baseline_window_rate", "lift", "lift_low", "lift_high"]  # fmt: skip
    section = {}
    for p in found:
        shown = p.rows[[k for k in keys if k in p.rows.columns]].head(max_rows)
        section[p.name] = {"unit": p.unit, "tolerance": p.tolerance, "n_rows": len(p.rows), "rows": _records(shown)}
    return section
