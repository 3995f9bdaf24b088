"""Run-level metrics over the results table, written next to it as JSON.

Rates are fractions of all input files, so they can be quoted like the
validity / uniqueness / S.U.N. rates of generative-model papers. With a known
set (config ``known_materials.database``) the novel rate and the S.U.N. rate
(stable, unique and novel, as MatterGen reports it) are added; each rate says
which hull and which known set it used. ``stable_and_unique`` stays for runs
without a known set.

It also holds the funnel (how many structures survived each stage), the cost
in core-hours per stage with the failure taxonomy and a projection of what is
still pending, the ML-vs-DFT agreement when the ML stage ran, and the
provenance of the run (see :mod:`dftscreen.provenance`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from dftscreen.columns import (
    DYNAMICALLY_STABLE_COLUMN,
    E_HULL_COLUMN,
    E_HULL_COLUMN_NO_PHASES,
    ML_DYNAMICALLY_STABLE_COLUMN,
    ML_E_HULL_COLUMN,
    ML_E_HULL_COLUMN_NO_PHASES,
    ML_FORMATION_COLUMN,
    ML_STATUS_COLUMN,
    NOVEL_COLUMN,
    PHONON_CORE_HOURS_COLUMN,
    RELAXED_NOVEL_COLUMN,
    TARGET_UNITS,
    target_columns,
)
from dftscreen.cost import FAILURE_KINDS, failure_kind, projection
from dftscreen.provenance import unconverged_warning
from dftscreen.status_codes import (
    DUPLICATE,
    FAILED,
    NOT_CONVERGED,
    NOT_FINISHED,
    NOT_SAMPLED,
    OK,
    SCREENED_OUT,
    TOO_LARGE,
)

#: Statuses of a sound structure, one that passed the checks (the funnel's ``dft_ready``): it went
#: to DFT, duplicates one that did, was kept from DFT by the ML screen or is too large for DFT.
VALID_STATUSES = [OK, NOT_CONVERGED, FAILED, NOT_FINISHED, DUPLICATE, SCREENED_OUT, NOT_SAMPLED, TOO_LARGE]

#: Cost columns of the results table per stage.
STAGE_COST_COLUMNS = {"relax": "relax_core_hours", "properties": "properties_core_hours"}
#: Cost columns of stages that only some structures reach (no projection onto unfinished rows).
SELECTED_STAGE_COST_COLUMNS = {"phonons": PHONON_CORE_HOURS_COLUMN}


def dynamically_checked(table: pd.DataFrame) -> bool:
    """Whether any row has a DFT phonon verdict (``dynamically_stable`` true or false)."""
    return DYNAMICALLY_STABLE_COLUMN in table.columns and table[DYNAMICALLY_STABLE_COLUMN].notna().any()


def _count_rate(mask: pd.Series, total: int) -> dict[str, Any]:
    count = int(mask.fillna(False).astype(bool).sum())
    return {"count": count, "rate": count / total if total else None}


def _flag(table: pd.DataFrame, column: str) -> pd.Series:
    """A boolean column with missing values as False (every other value as ``bool(value)``)."""
    values = table[column]
    return values.where(values.notna(), False).astype(bool)


def dft_ready(table: pd.DataFrame) -> pd.Series:
    """Sound structures (the funnel's ``dft_ready``): the check's ``dft_ready`` flag, or, in a
    table without it, a status of :data:`VALID_STATUSES`. Duplicates are dft_ready."""
    if "dft_ready" in table.columns:
        return _flag(table, "dft_ready")
    return table["status"].isin(VALID_STATUSES)


def relaxation_finished(table: pd.DataFrame) -> pd.Series:
    """Rows whose own DFT relaxation converged: status ``ok``, and those whose properties job then
    failed or has not finished (their energy, formation energy and hull distance are final)."""
    finished = table["status"] == OK
    if "relax_converged" in table.columns:
        finished |= _flag(table, "relax_converged") & table["status"].isin([FAILED, NOT_FINISHED])
    return finished


def hull_column(table: pd.DataFrame) -> str | None:
    """The table's energy-above-hull column, if any."""
    return next((c for c in (E_HULL_COLUMN, E_HULL_COLUMN_NO_PHASES) if c in table.columns), None)


def stable(table: pd.DataFrame, threshold_eV_per_atom: float) -> pd.Series:
    """Rows whose relaxation finished (:func:`relaxation_finished`) at most ``threshold_eV_per_atom``
    above the hull of :func:`hull_column`; all False in a table without a hull column.
    Stability needs the relaxation only: a failed band structure does not make a crystal unstable."""
    column = hull_column(table)
    if column is None:
        return pd.Series(False, index=table.index)
    e_hull = pd.to_numeric(table[column], errors="coerce")
    return relaxation_finished(table) & (e_hull <= threshold_eV_per_atom)


def sun_novelty_column(table: pd.DataFrame) -> str | None:
    """The novelty column S.U.N. counts: the relaxed structure's (a generated crystal can relax into
    a known one), as MatterGen does, or the generated one's when no relaxed novelty exists; None
    without a known set (no ``novel`` column)."""
    if NOVEL_COLUMN not in table.columns:
        return None
    return RELAXED_NOVEL_COLUMN if RELAXED_NOVEL_COLUMN in table.columns else NOVEL_COLUMN


def funnel(table: pd.DataFrame, *, stable_threshold_eV_per_atom: float) -> list[dict[str, Any]]:
    """How many inputs survive each stage, each stage a subset of the one before.

    inputs -> parsed -> dft_ready -> unique -> (novel) -> (passed ML screen) ->
    relaxed -> (stable) -> (dynamically stable) -> (on target). "dynamically stable"
    counts DFT phonons only (``phonons.dft``): a structure without them does not pass it.
    Stages in parentheses appear only when their columns exist. Each entry: stage, count, rate of inputs, rate of the
    stage before.
    """
    total = len(table)
    status = table["status"]
    survivors = pd.Series(True, index=table.index)
    steps: list[tuple[str, pd.Series]] = [("inputs", survivors)]
    survivors = survivors & table["n_sites"].notna() if "n_sites" in table.columns else survivors
    steps.append(("parsed", survivors))
    survivors = survivors & dft_ready(table)
    steps.append(("dft_ready", survivors))
    survivors = survivors & (status != DUPLICATE)
    steps.append(("unique", survivors))
    if NOVEL_COLUMN in table.columns:
        survivors = survivors & _flag(table, NOVEL_COLUMN)
        steps.append(("novel", survivors))
    if ML_STATUS_COLUMN in table.columns:
        survivors = survivors & (status != SCREENED_OUT)
        steps.append(("passed ML screen", survivors))
    if (status == NOT_SAMPLED).any():
        survivors = survivors & (status != NOT_SAMPLED)
        steps.append(("in DFT sample", survivors))
    survivors = survivors & relaxation_finished(table)
    steps.append(("relaxed", survivors))
    column = hull_column(table)
    if column:
        survivors = survivors & (pd.to_numeric(table[column], errors="coerce") <= stable_threshold_eV_per_atom)
        steps.append(("stable", survivors))
    if dynamically_checked(table):
        survivors = survivors & _flag(table, DYNAMICALLY_STABLE_COLUMN)
        steps.append(("dynamically stable", survivors))
    hit_columns = [target_columns(name)[2] for name in TARGET_UNITS if target_columns(name)[2] in table.columns]
    if hit_columns:
        on_target = pd.Series(True, index=table.index)
        for hit in hit_columns:
            on_target &= _flag(table, hit)
        survivors = survivors & on_target
        steps.append(("on target", survivors))
    result, previous = [], total
    for name, mask in steps:
        count = int(mask.sum())
        result.append(
            {
                "stage": name,
                "count": count,
                "rate_of_inputs": count / total if total else None,
                "rate_of_previous": count / previous if previous else None,
            }
        )
        previous = count
    return result


def _numbers(table: pd.DataFrame, column: str) -> pd.Series:
    if column not in table.columns:
        return pd.Series(dtype=float)
    return pd.to_numeric(table[column], errors="coerce")


def failure_taxonomy(table: pd.DataFrame) -> dict[str, int]:
    """Failed rows, and unfinished rows whose job was killed, per kind of :data:`dftscreen.cost.FAILURE_KINDS`."""
    counts = dict.fromkeys(FAILURE_KINDS, 0)
    for row in table.to_dict("records"):
        category = row.get("failure_category")
        category = category if isinstance(category, str) and category else None
        if row.get("status") == FAILED:
            counts[category or failure_kind(row.get("reason"))] += 1
        elif row.get("status") == NOT_FINISHED and category:
            counts[category] += 1
    return counts


def cost_summary(table: pd.DataFrame) -> dict[str, Any]:
    """Core-hours per stage (each DFT job once: duplicates carry no cost), failure taxonomy, projection."""
    own = table[table["status"] != DUPLICATE]
    atoms = _numbers(own, "n_sites")
    finished_cost: dict[str, list[float]] = {}
    finished_atoms: dict[str, list[int]] = {}
    pending_atoms: dict[str, list[int]] = {}
    per_stage: dict[str, Any] = {}
    for stage, column in STAGE_COST_COLUMNS.items():
        cost = _numbers(own, column)
        measured = cost.notna() & atoms.notna()
        finished_cost[stage] = cost[measured].tolist()
        finished_atoms[stage] = atoms[measured].astype(int).tolist()
        per_stage[stage] = {
            "core_hours": float(cost.sum()) if cost.notna().any() else 0.0,
            "jobs": int(cost.notna().sum()),
        }
        waiting = (own["status"] == NOT_FINISHED) & cost.isna() & atoms.notna()
        pending_atoms[stage] = atoms[waiting].astype(int).tolist()
    for stage, column in SELECTED_STAGE_COST_COLUMNS.items():
        cost = _numbers(own, column)
        if cost.notna().any():
            per_stage[stage] = {"core_hours": float(cost.sum()), "jobs": int(cost.notna().sum())}
    total = sum(stage["core_hours"] for stage in per_stage.values())
    taxonomy = failure_taxonomy(own)
    n_inputs = len(table)
    return {
        "unit": "core-hours (wall time x MPI ranks, summed over every start of a job)",
        "total_core_hours": total,
        "stages": per_stage,
        "core_hours_per_1000_inputs": 1000.0 * total / n_inputs if n_inputs else None,
        "failure_taxonomy": taxonomy,
        "projection": projection(finished_cost, finished_atoms, pending_atoms),
    }


def summarize(
    table: pd.DataFrame,
    *,
    stable_threshold_eV_per_atom: float,
    provenance: dict[str, Any] | None = None,
    known_set: str | None = None,
    training_set: str | None = None,
) -> dict[str, Any]:
    """Counts and rates over the whole run, hit rate / MAE per target, funnel, cost and provenance.

    ``known_set`` / ``training_set`` are the labels of the known sets novelty was judged
    against (``None``: not given, and no novelty rate is reported).
    """
    total = len(table)
    status = table["status"]
    valid = status.isin(VALID_STATUSES)
    unique = valid & (status != DUPLICATE)
    relaxed_ok = status == OK
    e_hull_column = hull_column(table)
    stable_rows = stable(table, stable_threshold_eV_per_atom)
    provenance = provenance or {}
    warning = unconverged_warning(provenance.get("dft_preset"))
    summary: dict[str, Any] = {
        "warning": warning,
        "numbers_converged": warning is None if provenance.get("dft_preset") else None,
        "n_inputs": total,
        "status_counts": {str(k): int(v) for k, v in status.value_counts().items()},
        "valid": _count_rate(valid, total),
        "unique": _count_rate(unique, total),
        "relaxed_ok": _count_rate(relaxed_ok, total),
        "stable": _count_rate(stable_rows, total),
        "stable_and_unique": _count_rate(stable_rows & unique, total),
        "stable_threshold_eV_per_atom": stable_threshold_eV_per_atom,
        "hull_column": e_hull_column,
        "relaxed_into_different_structure": _count_rate(
            relaxed_ok & (table.get("relaxed_matches_generated", pd.Series(True, index=table.index)) == False),  # noqa: E712
            total,
        ),
        "targets": {},
        "funnel": funnel(table, stable_threshold_eV_per_atom=stable_threshold_eV_per_atom),
        "cost": cost_summary(table),
        "provenance": provenance,
    }
    agreement = ml_agreement(table, stable_threshold_eV_per_atom=stable_threshold_eV_per_atom)
    if agreement is not None:
        summary["ml_vs_dft"] = agreement
    hull_phases = sorted({str(h) for h in table.get("hull_reference", pd.Series(dtype=object)).dropna()})
    summary["hull"] = {"column": e_hull_column, "built_from": hull_phases}
    if known_set and "novel" in table.columns:
        novel = unique & (table["novel"] == True)  # noqa: E712
        summary["novel"] = {**_count_rate(novel, total), "known_set": known_set}
        # S.U.N. counts the novelty of sun_novelty_column (the relaxed structure's when it exists).
        novelty_of = "generated structure"
        if sun_novelty_column(table) == RELAXED_NOVEL_COLUMN:
            novel_relaxed = unique & (table[RELAXED_NOVEL_COLUMN] == True)  # noqa: E712
            summary["novel_after_relaxation"] = {**_count_rate(novel_relaxed, total), "known_set": known_set}
            novel, novelty_of = novel_relaxed, "DFT-relaxed structure"
        summary["stable_unique_novel"] = {
            **_count_rate(stable_rows & novel, total),
            "known_set": known_set,
            "novelty_of": novelty_of,
            "hull_column": e_hull_column,
            "stable_threshold_eV_per_atom": stable_threshold_eV_per_atom,
        }
        if dynamically_checked(table):
            # S.U.N. that also has no imaginary phonon mode (DFT phonons; rows without them do not count).
            summary["stable_unique_novel_dynamically_stable"] = {
                **_count_rate(stable_rows & novel & _flag(table, DYNAMICALLY_STABLE_COLUMN), total),
                "known_set": known_set,
                "note": "S.U.N. and dynamically stable by DFT phonons (phonons.dft)",
            }
    if dynamically_checked(table):
        summary["dynamically_stable"] = {
            **_count_rate(unique & _flag(table, DYNAMICALLY_STABLE_COLUMN), total),
            "n_checked": int(table[DYNAMICALLY_STABLE_COLUMN].notna().sum()),
        }
    if training_set and "novel_vs_training" in table.columns:
        summary["novel_vs_training"] = {
            **_count_rate(unique & (table["novel_vs_training"] == True), total),  # noqa: E712
            "training_set": training_set,
        }
    if "smact_valid" in table.columns:
        summary["smact_valid"] = _count_rate(table["smact_valid"] == True, total)  # noqa: E712
    if "crystallm_valid" in table.columns:
        summary["crystallm_valid"] = _count_rate(table["crystallm_valid"] == True, total)  # noqa: E712
    for name in TARGET_UNITS:
        _, error_col, hit_col = target_columns(name)
        if error_col not in table.columns:
            continue
        errors = pd.to_numeric(table[error_col], errors="coerce").dropna()
        hits = table[hit_col].dropna().astype(bool)
        summary["targets"][name] = {
            "n_compared": int(len(errors)),
            "hit_rate": float(hits.mean()) if len(hits) else None,
            "mean_absolute_error": float(errors.abs().mean()) if len(errors) else None,
            "unit": TARGET_UNITS[name],
        }
    return summary


#: Stability cut-offs (eV/atom above the hull) at which ML and DFT verdicts are compared.
AGREEMENT_THRESHOLDS_EV_PER_ATOM = (0.0, 0.05, 0.1)
#: Pre-screen thresholds (eV/atom) whose cost in lost DFT-stable structures is reported.
SCREEN_THRESHOLDS_EV_PER_ATOM = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)


def _confusion(ml_stable: pd.Series, dft_stable: pd.Series) -> dict[str, Any]:
    """Counts of the stable/unstable confusion (DFT is the truth) and the usual rates."""
    tp = int((ml_stable & dft_stable).sum())
    fp = int((ml_stable & ~dft_stable).sum())
    fn = int((~ml_stable & dft_stable).sum())
    tn = int((~ml_stable & ~dft_stable).sum())
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
    n = tp + fp + fn + tn
    return {
        "both_stable": tp,
        "ml_stable_dft_unstable": fp,
        "ml_unstable_dft_stable": fn,
        "both_unstable": tn,
        "accuracy": (tp + tn) / n if n else None,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def dynamical_agreement(table: pd.DataFrame) -> dict[str, Any] | None:
    """ML against DFT phonons on dynamical stability, over rows with both (``None`` when none has both)."""
    if not {ML_DYNAMICALLY_STABLE_COLUMN, DYNAMICALLY_STABLE_COLUMN} <= set(table.columns):
        return None
    both = table[[ML_DYNAMICALLY_STABLE_COLUMN, DYNAMICALLY_STABLE_COLUMN]].dropna()
    if both.empty:
        return None
    return {"n_compared": int(len(both)),
            **_confusion(both[ML_DYNAMICALLY_STABLE_COLUMN].astype(bool), both[DYNAMICALLY_STABLE_COLUMN].astype(bool))}


def ml_agreement(table: pd.DataFrame, *, stable_threshold_eV_per_atom: float) -> dict[str, Any] | None:
    """How well the ML verdicts agree with DFT, over unique structures that have both (``None`` without ML).

    - ``confusion``: stable (energy above hull at most t) by ML vs by DFT, for t = 0, 0.05 and 0.1 eV/atom;
    - ``formation_energy_mae_eV_per_atom``: mean |ML - DFT| formation energy;
    - ``e_above_hull_mae_eV_per_atom``: mean |ML - DFT| energy above the hull;
    - ``dft_stable_discarded_by_screen``: per pre-screen threshold s, how many structures DFT calls
      stable (within ``stable_threshold_eV_per_atom``) have an ML energy above hull over s, i.e. would
      have been thrown away unseen.

    Screened-out structures have no DFT and so cannot enter these numbers; their count is reported.
    """
    ml_hull = next((c for c in (ML_E_HULL_COLUMN, ML_E_HULL_COLUMN_NO_PHASES) if c in table.columns), None)
    if ml_hull is None:
        return None
    dft_hull = next((c for c in (E_HULL_COLUMN, E_HULL_COLUMN_NO_PHASES) if c in table.columns), None)
    unique_ok = table["status"] == OK
    result: dict[str, Any] = {
        "ml_model": next(iter(table["ml_model"].dropna()), None) if "ml_model" in table.columns else None,
        "ml_hull_column": ml_hull,
        "dft_hull_column": dft_hull,
        "n_screened_out": int((table["status"] == SCREENED_OUT).sum()),
    }
    # Dynamical stability: ML phonons against DFT phonons (None when no structure has both).
    result["dynamical_stability"] = dynamical_agreement(table[unique_ok])
    if dft_hull is None:
        result["n_compared"] = 0
        return result
    both = table[unique_ok].copy()
    both["_ml"] = pd.to_numeric(both[ml_hull], errors="coerce")
    both["_dft"] = pd.to_numeric(both[dft_hull], errors="coerce")
    both = both.dropna(subset=["_ml", "_dft"])
    result["n_compared"] = int(len(both))
    result["confusion"] = {
        f"{t:g}": _confusion(both["_ml"] <= t, both["_dft"] <= t) for t in AGREEMENT_THRESHOLDS_EV_PER_ATOM
    }
    result["e_above_hull_mae_eV_per_atom"] = float((both["_ml"] - both["_dft"]).abs().mean()) if len(both) else None
    formation = table[unique_ok]
    if ML_FORMATION_COLUMN in formation.columns and "formation_energy_eV_per_atom" in formation.columns:
        errors = (
            pd.to_numeric(formation[ML_FORMATION_COLUMN], errors="coerce")
            - pd.to_numeric(formation["formation_energy_eV_per_atom"], errors="coerce")
        ).dropna()
        result["n_formation_energies_compared"] = int(len(errors))
        result["formation_energy_mae_eV_per_atom"] = float(errors.abs().mean()) if len(errors) else None
    dft_stable = both["_dft"] <= stable_threshold_eV_per_atom
    result["dft_stable"] = int(dft_stable.sum())
    result["dft_stable_discarded_by_screen"] = {
        f"{s:g}": int((dft_stable & (both["_ml"] > s)).sum()) for s in SCREEN_THRESHOLDS_EV_PER_ATOM
    }
    return result
