"""Run-level metrics over the results table, written next to it as JSON.

Rates are fractions of all input files, so they can be quoted like the
validity / uniqueness / S.U.N. rates of generative-model papers. With a known
set (config ``known_materials.database``) the novel rate and the S.U.N. rate
(stable, unique and novel, as MatterGen reports it) are added; each rate says
which hull and which known set it used. ``stable_and_unique`` stays for runs
without a known set.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from dftscreen.stability import E_HULL_COLUMN, E_HULL_COLUMN_NO_PHASES
from dftscreen.status_codes import DUPLICATE, FAILED, NOT_CONVERGED, NOT_FINISHED, OK
from dftscreen.targets import TARGET_KINDS, target_columns


def _count_rate(mask: pd.Series, total: int) -> dict[str, Any]:
    count = int(mask.fillna(False).astype(bool).sum())
    return {"count": count, "rate": count / total if total else None}


def summarize(
    table: pd.DataFrame,
    stable_threshold_eV_per_atom: float = 0.1,
    known_set: str | None = None,
    training_set: str | None = None,
) -> dict[str, Any]:
    """Counts and rates over the whole run, and hit rate / MAE per target.

    ``known_set`` / ``training_set`` are the labels of the known sets novelty was judged
    against (``None``: not given, and no novelty rate is reported).
    """
    total = len(table)
    status = table["status"]
    valid = status.isin([OK, NOT_CONVERGED, FAILED, NOT_FINISHED, DUPLICATE])
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
    hull_phases = sorted({str(h) for h in table.get("hull_reference", pd.Series(dtype=object)).dropna()})
    summary["hull"] = {"column": hull_column, "built_from": hull_phases}
    if known_set and "novel" in table.columns:
        novel = unique & (table["novel"] == True)  # noqa: E712
        summary["novel"] = {**_count_rate(novel, total), "known_set": known_set}
        summary["stable_unique_novel"] = {
            **_count_rate(stable & novel, total), "known_set": known_set, "hull_column": hull_column,
            "stable_threshold_eV_per_atom": stable_threshold_eV_per_atom,
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
