"""Recovering a relaxation: checkpoints after every ionic step and the SCF error ladder.

Checkpoint
    After every ionic step rank 0 writes ``checkpoint.json`` (atomically) with
    the geometry whose forces were just computed, the number of completed
    ionic steps, the rung of the ladder in use and the attempts so far. A
    relaxation that is killed (SIGKILL, SLURM time limit, node failure) and
    started again continues from there instead of from the generated
    structure, with the optimizer's own state (the BFGS Hessian, which ASE
    rewrites after every step; a half-written one is dropped). Only a
    relaxation of the same DFT settings that starts from the same structure
    resumes: a CIF replaced under the same name starts over.

Ladder
    When the SCF does not converge, the relaxation is retried from the last
    checkpoint with the next rung: each rung is a set of GPAW settings merged
    over the preset. The default ladder is :data:`DEFAULT_SCF_LADDER`; config
    can replace it (``dft.scf_ladder``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from dftscreen.io import atomic_write_json, read_json

CHECKPOINT_NAME = "checkpoint.json"
#: ASE's own optimizer state (BFGS: the Hessian and the last step), which ASE
#: rewrites after every step; a resumed relaxation reads it so that it goes on
#: with what the optimizer had learnt instead of a fresh Hessian.
OPTIMIZER_STATE_NAME = "optimizer_state.json"

#: Rungs tried in order after the preset's own settings fail to converge the SCF.
#: Each is ``{"name": ..., "description": ..., "gpaw": {...}}``; ``gpaw`` keys
#: are merged over the preset (so they accumulate only through the preset, not
#: through earlier rungs: each rung states everything it changes).
DEFAULT_SCF_LADDER: list[dict[str, Any]] = [
    {
        "name": "gentle_mixer",
        "description": "density mixer beta lowered to 0.02, more SCF iterations",
        "gpaw": {"mixer": {"beta": 0.02, "nmaxold": 5, "weight": 100.0}, "maxiter": 600},
    },
    {
        "name": "more_bands",
        "description": "gentle mixer plus 50 % more bands and a stricter Davidson eigensolver",
        "gpaw": {
            "mixer": {"beta": 0.02, "nmaxold": 5, "weight": 100.0},
            "maxiter": 600,
            "nbands": "150%",
            "eigensolver": {"name": "dav", "niter": 3},
        },
    },
    {
        "name": "wide_smearing",
        "description": "all of the above with Fermi-Dirac smearing widened to 0.2 eV",
        "gpaw": {
            "mixer": {"beta": 0.02, "nmaxold": 5, "weight": 100.0},
            "maxiter": 600,
            "nbands": "150%",
            "eigensolver": {"name": "dav", "niter": 3},
            "smearing_eV": 0.2,
        },
    },
]


def strategies(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The preset itself followed by the ladder's rungs (``settings['scf_ladder']`` or the default)."""
    ladder = settings.get("scf_ladder")
    if ladder is None:
        ladder = DEFAULT_SCF_LADDER
    preset = {"name": "preset", "description": "preset settings", "gpaw": {}}
    return [preset, *ladder]


def starting_structure_fingerprint(atoms: Atoms) -> str:
    """SHA-256 of a relaxation's starting point: species, cell and positions (Å, to 1e-6) and initial moments (µB)."""
    digest = hashlib.sha256()
    for array in (atoms.numbers, atoms.cell[:], atoms.positions, atoms.get_initial_magnetic_moments()):
        # + 0.0 turns -0.0 into 0.0, which has other bytes.
        digest.update(np.ascontiguousarray(np.round(np.asarray(array, dtype=float), 6) + 0.0).tobytes())
    return digest.hexdigest()


def resumable(checkpoint: dict[str, Any] | None, gpaw_settings: dict[str, Any], fingerprint: str) -> bool:
    """Whether ``checkpoint`` continues a relaxation with these GPAW settings from this starting structure.

    Results must not depend on history: a checkpoint of other settings or of another starting
    structure is not resumed. Checkpoints written before fingerprints existed carry none; they
    are resumed on their settings alone, as they were then.
    """
    if checkpoint is None or checkpoint.get("gpaw_settings") != gpaw_settings:
        return False
    return checkpoint.get("start_fingerprint", fingerprint) == fingerprint


def load_checkpoint(workdir: Path) -> dict[str, Any] | None:
    """The checkpoint in ``workdir``, or ``None`` when there is none (or it is unreadable)."""
    path = workdir / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except (OSError, ValueError):
        # Written atomically, so this only happens if someone edited it; start over.
        return None
    return data if isinstance(data, dict) and "positions_A" in data else None


def atoms_from_checkpoint(checkpoint: dict[str, Any], template: Atoms) -> Atoms:
    """Atoms at the checkpointed geometry, with ``template``'s species and initial moments."""
    atoms = template.copy()
    numbers = np.array(checkpoint["numbers"])
    if not np.array_equal(numbers, atoms.numbers):
        raise ValueError("checkpoint belongs to a different structure (atomic numbers differ)")
    atoms.set_cell(np.array(checkpoint["cell_A"]), scale_atoms=False)
    atoms.set_positions(np.array(checkpoint["positions_A"]))
    return atoms


def write_checkpoint(workdir: Path, atoms: Atoms, state: dict[str, Any]) -> None:
    """Write the checkpoint (call on MPI rank 0 only)."""
    record = dict(state)
    record.update(
        numbers=atoms.numbers.tolist(),
        cell_A=np.asarray(atoms.cell).tolist(),
        positions_A=atoms.positions.tolist(),
    )
    atomic_write_json(workdir / CHECKPOINT_NAME, record)


#: GPAW settings (our keys and raw GPAW keywords) whose value changes a converged total energy,
#: as opposed to how the SCF gets there (mixer, eigensolver, band count, iterations). The coarser
#: mesh of a relaxation with a gap (``kpt_density_insulator_per_A``) is left out on purpose: it is
#: chosen per structure, within 1.4 meV/atom of converged, and elemental references never use it.
ENERGY_SETTING_KEYS: tuple[str, ...] = ("xc", "ecut_eV", "smearing_eV", "setups", "mode", "kpts", "kpt_density_per_A")


def energy_settings(relax_record: dict[str, Any]) -> dict[str, Any]:
    """The energy-relevant GPAW settings a relaxation's final energy was computed with.

    The record's own settings (preset plus any ``dft.structure_overrides``) with the
    SCF-ladder rung it finished on merged over them: the ``wide_smearing`` rung
    gives 0.2 eV Fermi-Dirac smearing where the ``standard`` preset has 0.05 eV.
    Only :data:`ENERGY_SETTING_KEYS` are returned, so two records with equal
    results can share one hull.
    """
    settings = relax_record.get("settings") or {}
    gpaw = dict(settings.get("gpaw") or {})
    rung_name = relax_record.get("scf_strategy")
    rung = next((r for r in strategies(settings) if r["name"] == rung_name), None)
    if rung:
        gpaw.update(rung.get("gpaw") or {})
    return {key: gpaw[key] for key in ENERGY_SETTING_KEYS if key in gpaw}
