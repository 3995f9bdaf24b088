"""Run-level metrics over the results table, written next to it as JSON.

Rates are fractions of all input files, so they can be quoted like the
validity / uniqueness / S.U.N. rates of generative-model papers (S.U.N. here
is stable-and-unique: novelty needs a database of known crystals and is not
computed).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from dftscreen.stability import E_HULL_COLUMN, E_HULL_COLUMN_NO_PHASES
from dftscreen.status_codes import DUPLICATE, FAILED, NOT_CONVERGED, NOT_FINISHED, OK, SCREENED_OUT
from dftscreen.targets import TARGET_KINDS, target_columns


def _count_rate(mask: pd.Series, total: int) -> dict[str, Any]:
    count = int(mask.fillna(False).astype(bool).sum())
    return {"count": count, "rate": count / total if total else None}


def summarize(table: pd.DataFrame, stable_threshold_eV_per_atom: float = 0.1) -> dict[str, Any]:
    """Counts and rates over the whole run, and hit rate / MAE per target."""
    total = len(table)
    status = table["status"]
    valid = status.isin([OK, NOT_CONVERGED, FAILED, NOT_FINISHED, DUPLICATE, SCREENED_OUT])
    unique = valid & (status != DUPLICATE)
    relaxed_ok = status == OK
    hull_column = next((c for c in (E_HULL_COLUMN, E_HULL_COLUMN_NO_PHASES) if c in table.columns), None)
    stable = pd.Series(False, index=table.index)
    if hull_column:
        stable = relaxed_ok & (pd.to_numeric(table[hull_column], errors="coerce") <= stable_threshold_eV_per_atom)
    summary: dict[str, Any] = {
        "n_inputs": total,
        "status_counts": {str(k): int(v) for k, v in status.value_counts().items()},
        "valid": _count_rate(valid, total),
        "unique": _count_rate(unique, total),
        "relaxed_ok": _count_rate(relaxed_ok, total),
        "stable": _count_rate(stable, total),
        "stable_and_unique": _count_rate(stable & unique, total),
        "stable_threshold_eV_per_atom": stable_threshold_eV_per_atom,
        "hull_column": hull_column,
        "relaxed_into_different_structure": _count_rate(
            relaxed_ok & (table.get("relaxed_matches_generated", pd.Series(True, index=table.index)) == False),  # noqa: E712
            total,
        ),
        "targets": {},
    }
    agreement = ml_agreement(table, stable_threshold_eV_per_atom)
    if agreement is not None:
        summary["ml_vs_dft"] = agreement
    if "crystallm_valid" in table.columns:
        summary["crystallm_valid"] = _count_rate(table["crystallm_valid"] == True, total)  # noqa: E712
    for name in TARGET_KINDS:
        _, error_col, hit_col = target_columns(name)
        if error_col not in table.columns:
            continue
        errors = pd.to_numeric(table[error_col], errors="coerce").dropna()
        hits = table[hit_col].dropna().astype(bool)
        summary["targets"][name] = {
            "n_compared": int(len(errors)),
            "hit_rate": float(hits.mean()) if len(hits) else None,
            "mean_absolute_error": float(errors.abs().mean()) if len(errors) else None,
            "unit": TARGET_KINDS[name].unit,
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
        "both_stable": tp, "ml_stable_dft_unstable": fp, "ml_unstable_dft_stable": fn, "both_unstable": tn,
        "accuracy": (tp + tn) / n if n else None, "precision": precision, "recall": recall, "f1": f1,
    }


def ml_agreement(table: pd.DataFrame, stable_threshold_eV_per_atom: float = 0.1) -> dict[str, Any] | None:
    """How well the ML verdicts agree with DFT, over unique structures that have both (``None`` without ML).

    - ``confusion``: stable (energy above hull at most t) by ML vs by DFT, for t = 0, 0.05 and 0.1 eV/atom;
    - ``formation_energy_mae_eV_per_atom``: mean |ML - DFT| formation energy;
    - ``e_above_hull_mae_eV_per_atom``: mean |ML - DFT| energy above the hull;
    - ``dft_stable_discarded_by_screen``: per pre-screen threshold s, how many structures DFT calls
      stable (within ``stable_threshold_eV_per_atom``) have an ML energy above hull over s, i.e. would
      have been thrown away unseen.

    Screened-out structures have no DFT and so cannot enter these numbers; their count is reported.
    """
    from dftscreen.ml import ML_E_HULL_COLUMN, ML_E_HULL_COLUMN_NO_PHASES, ML_FORMATION_COLUMN

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
        errors = (pd.to_numeric(formation[ML_FORMATION_COLUMN], errors="coerce")
                  - pd.to_numeric(formation["formation_energy_eV_per_atom"], errors="coerce")).dropna()
        result["n_formation_energies_compared"] = int(len(errors))
        result["formation_energy_mae_eV_per_atom"] = float(errors.abs().mean()) if len(errors) else None
    dft_stable = both["_dft"] <= stable_threshold_eV_per_atom
    result["dft_stable"] = int(dft_stable.sum())
    result["dft_stable_discarded_by_screen"] = {
        f"{s:g}": int((dft_stable & (both["_ml"] > s)).sum()) for s in SCREEN_THRESHOLDS_EV_PER_ATOM
    }
    return result
