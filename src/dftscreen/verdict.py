"""A verdict per structure, in words: what became of it and why.

Examples: ``"stable (0.02 eV/atom above hull), band gap on target"``,
``"relaxed into a different structure (P4mm -> Pm-3m), unstable (0.31 eV/atom above hull)"``,
``"failed: SCF did not converge"``, ``"invalid: atoms 1 and 4 are 0.31 Å apart ..."``.

Stages that later issues add (novelty against known materials, an ML
pre-screen) are used when their columns are present (:data:`KNOWN_MATCH_COLUMN`,
:data:`NOVEL_COLUMN`, :data:`ML_STATUS_COLUMN`, :data:`ML_E_HULL_COLUMN`) and
ignored otherwise.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from dftscreen import status_codes
from dftscreen.columns import (
    DYNAMICALLY_STABLE_COLUMN,
    E_HULL_COLUMN,
    E_HULL_COLUMN_NO_PHASES,
    KNOWN_MATCH_COLUMN,
    ML_DYNAMICALLY_STABLE_COLUMN,
    ML_E_HULL_COLUMN,
    ML_E_HULL_COLUMN_NO_PHASES,
    NOVEL_COLUMN,
    RELAXED_KNOWN_MATCH_COLUMN,
    TARGET_UNITS,
    target_columns,
)
from dftscreen.cost import OTHER, failure_kind

_REASON_CHARS = 120


def _present(value: Any) -> bool:
    if value is None or value is pd.NA:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return True


def _is(value: Any, truth: bool) -> bool:
    """Whether a (possibly numpy or missing) flag is present and equals ``truth``."""
    return _present(value) and bool(value) is truth


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _short(text: Any) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"


def hull_column_of(row: dict[str, Any] | pd.Series) -> str | None:
    """The energy-above-hull column of a row (with reference phases or generated-only), if any."""
    for column in (E_HULL_COLUMN, E_HULL_COLUMN_NO_PHASES):
        if column in row:
            return column
    return None


def _stability_words(row: dict[str, Any] | pd.Series, threshold: float) -> str | None:
    column = hull_column_of(row)
    e_hull = _number(row.get(column)) if column else None
    if e_hull is None:
        return None
    word = "stable" if e_hull <= threshold else "unstable"
    if column != E_HULL_COLUMN:
        return f"{word} ({e_hull:.2f} eV/atom above the hull of the generated structures)"
    if e_hull < 0:
        return f"{word} ({-e_hull:.2f} eV/atom below the known hull: a candidate new stable phase)"
    return f"{word} ({e_hull:.2f} eV/atom above hull)"


def _mode_words(row: dict[str, Any] | pd.Series, prefix: str = "") -> str:
    """Where the softest mode is and how soft: ``imaginary mode at M, -2.1 THz``."""
    frequency = _number(row.get(f"{prefix}min_phonon_frequency_THz"))
    label = row.get(f"{prefix}min_phonon_qpoint_label")
    where = label if _present(label) else f"q = ({row.get(f'{prefix}min_phonon_qpoint')})"
    return f"imaginary mode at {where}, {frequency:.1f} THz" if frequency is not None else "imaginary mode"


def _phonon_words(row: dict[str, Any] | pd.Series, stable_words: str | None) -> str | None:
    """Dynamical stability, from DFT phonons when there are, else from the ML potential's when unstable:
    ``but dynamically unstable (imaginary mode at M, -2.1 THz)`` after a "stable" verdict."""
    dft = row.get(DYNAMICALLY_STABLE_COLUMN)
    if _is(dft, False):
        but = "but " if stable_words and stable_words.startswith("stable") else ""
        return f"{but}dynamically unstable ({_mode_words(row)})"
    if _is(dft, True):
        return "dynamically stable (no imaginary phonon mode)"
    if _is(row.get(ML_DYNAMICALLY_STABLE_COLUMN), False):
        return f"dynamically unstable by ML phonons ({_mode_words(row, 'ml_')})"
    return None


def spacegroup_change(row: dict[str, Any] | pd.Series) -> tuple[str | None, str | None] | None:
    """(generated, relaxed) space-group symbols of a row whose relaxation changed the space group; else ``None``.

    Both as :func:`dftscreen.changes.relaxation_change` found them: ``spacegroup_changed``
    compares its numbers, found at its own tolerance, so the generated symbol is
    ``spacegroup_symbol_generated``, not the check's ``spacegroup_symbol`` (found at
    ``check.symprec_A`` from the file as the check read it), which can name another group: the
    relaxed one itself. A table from before that column falls back to the check's symbol, except
    where it is the relaxed one (then ``None``: not recorded). ``None`` for a symbol not known.
    """
    if not _is(row.get("spacegroup_changed"), True):
        return None
    after = row.get("spacegroup_symbol_relaxed")
    after = str(after) if _present(after) else None
    before = row.get("spacegroup_symbol_generated")
    if not _present(before):
        before = row.get("spacegroup_symbol")
        before = str(before) if _present(before) and str(before) != after else None
    return str(before) if before is not None else None, after


def _structure_change_words(row: dict[str, Any] | pd.Series) -> str | None:
    if _is(row.get("relaxed_matches_generated"), False) or _is(row.get("spacegroup_changed"), True):
        before, after = spacegroup_change(row) or (None, None)
        symmetry = f" ({before} -> {after})" if before is not None and after is not None else ""
        return f"relaxed into a different structure{symmetry}"
    return None


def _target_words(row: dict[str, Any] | pd.Series) -> list[str]:
    words = []
    for name, unit in TARGET_UNITS.items():
        _, error_col, hit_col = target_columns(name)
        hit = row.get(hit_col)
        if not _present(hit):
            continue
        label = name.replace("_", " ")
        if bool(hit):
            words.append(f"{label} on target")
        else:
            error = _number(row.get(error_col))
            shown_unit = unit.replace("_per_", "/")
            words.append(f"{label} off target" + (f" ({error:+.2f} {shown_unit})" if error is not None else ""))
    return words


def _failure_words(row: dict[str, Any] | pd.Series) -> str:
    """Why a failed row's DFT failed, in a few words."""
    reason = row.get("reason")
    kind = row.get("failure_category") if _present(row.get("failure_category")) else failure_kind(reason)
    if kind == OTHER:
        return _short(reason)
    return "SCF did not converge" if "SCF" in kind else str(kind)


def _ml_screen_words(row: dict[str, Any] | pd.Series) -> str:
    e_ml = _number(row.get(ML_E_HULL_COLUMN))
    e_ml = e_ml if e_ml is not None else _number(row.get(ML_E_HULL_COLUMN_NO_PHASES))
    return f" ({e_ml:.2f} eV/atom above the ML hull)" if e_ml is not None else ""


def _duplicate_words(row: dict[str, Any] | pd.Series, representative: dict[str, Any] | pd.Series | None) -> str:
    """``duplicate of X``, with what became of X's DFT when its row says it did not end well."""
    words = f"duplicate of {row.get('duplicate_of')}"
    rep_status = representative.get("status") if representative is not None else None
    if rep_status == status_codes.NOT_CONVERGED:
        return f"{words}, whose relaxation did not converge (values from its last step)"
    if rep_status == status_codes.FAILED:
        return f"{words}, whose DFT failed: {_failure_words(representative)}"
    if rep_status == status_codes.NOT_FINISHED:
        return f"{words}, whose DFT has not finished: rerun the workflow"
    if rep_status == status_codes.SCREENED_OUT:
        return f"{words}, which was screened out by ML before DFT{_ml_screen_words(representative)}"
    if rep_status == status_codes.NOT_SAMPLED:
        return f"{words}, which the DFT budget left out of its cohort's sample"
    return words


def verdict(
    row: dict[str, Any] | pd.Series,
    *,
    stable_threshold_eV_per_atom: float,
    representative: dict[str, Any] | pd.Series | None = None,
) -> str:
    """What became of one structure, in words (see the module docstring for examples).

    ``representative`` is the row of a duplicate's representative (``duplicate_of``):
    its DFT status (not converged, failed, not finished, screened out by ML) is said in
    the duplicate's verdict, whose DFT values are the representative's.
    """
    status = row.get("status")
    reason = row.get("reason")
    if status == status_codes.INVALID:
        return f"invalid: {_short(reason)}"
    if status == status_codes.TOO_LARGE:
        return f"too large for DFT: {_short(reason)}"
    if status == status_codes.NOT_FINISHED:
        kind = row.get("failure_category")
        if _present(kind):
            return f"not finished: its job was killed ({kind}); rerun the workflow"
        return "not finished: rerun the workflow"
    if status == status_codes.FAILED:
        return f"failed: {_failure_words(row)}"
    if status == status_codes.NOT_SAMPLED:
        return "no DFT: not in its cohort's random sample (dft.max_structures_per_cohort)"
    known = row.get(KNOWN_MATCH_COLUMN)
    known_relaxed = row.get(RELAXED_KNOWN_MATCH_COLUMN)
    if _present(known):
        prefix = f"known: matches {known}"
        if _present(known_relaxed) and known_relaxed != known:
            prefix += f" (relaxed: {known_relaxed})"
    elif _is(row.get(NOVEL_COLUMN), True) and _present(known_relaxed):
        prefix = f"novel as generated, but relaxes into known {known_relaxed}"
    elif _is(row.get(NOVEL_COLUMN), True):
        prefix = "novel"
    else:
        prefix = None
    parts = [prefix] if prefix else []
    if status == status_codes.DUPLICATE:
        parts.insert(0, _duplicate_words(row, representative))
        rep_status = representative.get("status") if representative is not None else None
        if rep_status in (status_codes.FAILED, status_codes.NOT_FINISHED, status_codes.SCREENED_OUT,
                          status_codes.NOT_SAMPLED):
            return ", ".join(parts)  # no DFT values to judge
    if status == status_codes.SCREENED_OUT:
        parts.append(f"screened out by ML{_ml_screen_words(row)}")
        return ", ".join(parts)
    if status == status_codes.NOT_CONVERGED:
        parts.append("relaxation not converged (values from its last step)")
    change = _structure_change_words(row)
    if change:
        parts.append(change)
    stability = _stability_words(row, stable_threshold_eV_per_atom)
    if stability:
        parts.append(stability)
    elif status == status_codes.OK and not change:
        parts.append("relaxed, kept its structure")
    phonons = _phonon_words(row, stability)
    if phonons:
        parts.append(phonons)
    parts += _target_words(row)
    return ", ".join(parts) if parts else str(status or "unknown")


def verdicts(table: pd.DataFrame, *, stable_threshold_eV_per_atom: float) -> list[str]:
    """The verdict of every row of the results table, in row order (a duplicate's with its representative's row)."""
    rows = table.to_dict("records")
    by_id = {row.get("structure_id"): row for row in rows}
    representatives = [by_id.get(r.get("duplicate_of")) if _present(r.get("duplicate_of")) else None for r in rows]
    return [
        verdict(row, stable_threshold_eV_per_atom=stable_threshold_eV_per_atom, representative=rep)
        for row, rep in zip(rows, representatives)
    ]
