"""Phonons in the run: which structures get DFT phonons, and their records as table values.

The DFT phonons (:mod:`dftscreen.phonons`) cost a supercell single point per displacement, so by
default only the finalists get them (``phonons.dft: candidates``): structures whose own DFT
relaxation finished, that are unique, within ``stability.stable_threshold_eV_per_atom`` of the
hull and, with a known set, novel (the S.U.N. ones, metastable included at the default 0.1 eV/atom).
:func:`plan_dft_phonons` chooses them from the table the aggregate would write (before its phonon
columns) and sizes each job with the size gate (:func:`dftscreen.size_gate.estimate_phonons`): a
supercell over the gate or over ``phonons.max_supercell_atoms`` gets phonon status ``too_large``,
its row keeps everything else.

:func:`dftscreen.table.add_phonon_columns` reads the records into the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dftscreen import status_codes
from dftscreen.cif_reader import read_structure
from dftscreen.dft import structure_to_atoms
from dftscreen.phonons import PhononSettings, build_phonopy
from dftscreen.size_gate import GateSettings, estimate_phonons, route
from dftscreen.summary import _flag, stable, sun_novelty_column

if TYPE_CHECKING:
    from dftscreen.phonons import PhononSettings

#: Phonon statuses the table adds to those of the phonon records (:mod:`dftscreen.phonons`).
NOT_SELECTED = "not_selected"
PENDING = "not_finished"
TOO_LARGE = "too_large"

#: ``phonons.dft`` values (after :func:`dft_phonon_mode` resolved ``by_preset``).
MODES = ("candidates", "all", "none")


def dft_phonon_mode(phonons_config: Mapping[str, Any], preset: str) -> str:
    """``phonons.dft`` for the run's DFT preset: ``by_preset`` takes ``phonons.dft_by_preset[preset]``
    (``candidates`` for a preset not listed)."""
    mode = phonons_config["dft"]
    if mode == "by_preset":
        mode = (phonons_config.get("dft_by_preset") or {}).get(preset, "candidates")
    return str(mode)


def select_dft_phonons(table: pd.DataFrame, *, mode: str, stable_threshold_eV_per_atom: float) -> pd.Series:
    """Per row, why it gets no DFT phonons ("" when it does), for ``phonons.dft`` = ``mode``.

    Only rows with their own converged relaxation can (duplicates share their representative's).
    """
    if mode not in MODES:
        raise ValueError(f"phonons.dft must be one of {', '.join(MODES)}, not {mode!r}")
    own = table["status"] == status_codes.OK  # a duplicate's status is "duplicate"
    reasons = pd.Series("", index=table.index, dtype=object)
    reasons[~own] = "no converged DFT relaxation of its own"
    if mode == "none":
        reasons[own] = "phonons.dft is none"
        return reasons
    if mode == "all":
        return reasons
    on_hull = stable(table, stable_threshold_eV_per_atom)
    reasons[own & ~on_hull] = (
        f"not a candidate: more than {stable_threshold_eV_per_atom:g} eV/atom above the hull (phonons.dft: candidates)")
    novelty = sun_novelty_column(table)
    if novelty is not None:
        known = own & on_hull & ~_flag(table, novelty)
        reasons[known] = "not a candidate: a known material (phonons.dft: candidates)"
    return reasons


def supercell_job(
    cif: str | Path, settings: PhononSettings, gate: GateSettings
) -> dict[str, Any]:
    """The supercell, displacement count and resources of one structure's DFT phonons; ``too_large``
    holds the reason when the supercell exceeds ``max_supercell_atoms`` or the size gate."""
    structure, _ = read_structure(cif)
    phonon = build_phonopy(structure_to_atoms(structure), settings)
    supercell = phonon.supercell
    n_atoms = len(supercell.symbols)
    n_displacements = len(phonon.supercells_with_displacements)
    job: dict[str, Any] = {
        "supercell": [int(n) for n in np.diag(phonon.supercell_matrix)],
        "n_supercell_atoms": n_atoms,
        "n_displacements": n_displacements,
        "too_large": "",
    }
    if n_atoms > settings.max_supercell_atoms:
        job["too_large"] = (f"supercell of {n_atoms} atoms > phonons.max_supercell_atoms "
                            f"{settings.max_supercell_atoms}")
        return job
    decision = route(estimate_phonons(list(supercell.symbols), np.asarray(supercell.cell), n_displacements, gate),
                     gate.policy)
    job["too_large"] = decision.reason.replace("too large for DFT here", "phonon supercell too large for DFT here")
    job["tasks"] = decision.estimate.tasks
    job["runtime_min"] = decision.estimate.runtime_min
    job["mem_mb_per_task"] = decision.estimate.mem_mb_per_task
    return job


def plan_dft_phonons(
    table: pd.DataFrame,
    relaxed_cif_of: Mapping[str, str],
    *,
    mode: str,
    stable_threshold_eV_per_atom: float,
    settings: PhononSettings,
    gate: GateSettings,
) -> dict[str, Any]:
    """Which structures get DFT phonons, each with its supercell job (:func:`supercell_job`), and why
    the others do not. ``relaxed_cif_of``: each structure id's DFT-relaxed CIF."""
    reasons = select_dft_phonons(table, mode=mode, stable_threshold_eV_per_atom=stable_threshold_eV_per_atom)
    jobs: dict[str, Any] = {}
    not_selected: dict[str, str] = {}
    for sid, reason in zip(table["structure_id"], reasons):
        if reason:
            not_selected[sid] = reason
            continue
        try:
            jobs[sid] = supercell_job(relaxed_cif_of[sid], settings, gate)
        except Exception as exc:  # one unreadable structure must not stop the others' phonons
            not_selected[sid] = f"phonon set-up failed: {type(exc).__name__}: {exc}"
    return {"mode": mode, "jobs": jobs, "not_selected": not_selected,
            "runnable": sorted(sid for sid, job in jobs.items() if not job["too_large"])}


def qpoint_text(qpoint: Any) -> str | None:
    """A fractional q-point as ``"0.5 0.5 0"`` (``None`` without one)."""
    if qpoint is None:
        return None
    return " ".join(f"{float(q):.4g}" for q in qpoint)


def supercell_text(matrix: Any) -> str | None:
    """A (diagonal) supercell matrix as ``"2x2x2"`` (``None`` without one)."""
    if matrix is None:
        return None
    matrix = np.asarray(matrix)
    return "x".join(str(int(n)) for n in (np.diag(matrix) if matrix.ndim == 2 else matrix))
