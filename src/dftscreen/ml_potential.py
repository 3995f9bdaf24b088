"""The machine-learned potential itself: its settings, its checkpoint, the ASE calculator and one
relaxation with it (:func:`relax_atoms`). The ML stage (:mod:`dftscreen.ml`) runs it in batches;
the elemental references whose published cell is far from PBE's minimum start their DFT from it
(:func:`dftscreen.references.ml_relaxed_start`).

Units: energies eV, forces eV/Å, stress GPa, volumes Å³, times s. Nothing here imports torch or
the model package at module level.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from dftscreen.dft import EV_PER_A3_TO_GPA

#: The model package; its pretrained models ship inside its wheel.
ML_PACKAGE = "sevenn"
#: Default model: SevenNet-0 (11 July 2024), Matbench Discovery F1 0.724 on unique prototypes.
DEFAULT_MODEL = "7net-0"

# --- settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MLSettings:
    """How the ML relaxation runs (config section ``ml``; defaults live in the config schema)."""

    model: str = DEFAULT_MODEL
    optimizer: str = "FIRE"
    fmax_eV_per_A: float = 0.05
    max_steps: int = 500
    fix_symmetry: bool = True
    symprec: float = 1e-3
    #: An ML relaxation that changed the volume by more than this (%) is not used as DFT start.
    max_volume_change_pct: float = 50.0
    #: ... nor one with two atoms closer than this (Å).
    min_distance_A: float = 0.5

    @classmethod
    def from_config(cls, ml_config: dict[str, Any]) -> MLSettings:
        """The settings of config section ``ml`` as validated (every key present: the schema fills defaults)."""
        return cls(model=str(ml_config["model"]), **ml_config["relax"])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the model ----------------------------------------------------------------------------


def checkpoint_path(model: str) -> Path:
    """The checkpoint file of ``model``: a SevenNet pretrained name (from the installed wheel) or a path.

    Raises:
        FileNotFoundError: neither an existing file nor a pretrained model whose file is installed.
    """
    candidate = Path(model).expanduser()
    if candidate.is_file():
        return candidate
    from sevenn.util import pretrained_name_to_path

    try:
        path = Path(pretrained_name_to_path(model))
    except Exception as exc:
        raise FileNotFoundError(
            f"ML model {model!r} is neither a checkpoint file nor a SevenNet pretrained model shipped "
            f"in the installed {ML_PACKAGE} wheel (e.g. 7net-0, 7net-l3i5, 7net-mf-0): {exc}"
        ) from exc
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint of ML model {model!r} is not installed at {path}")
    return path


def sha256_of_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_provenance(model: str) -> dict[str, Any]:
    """Model name, package and version, checkpoint file name and SHA-256: what every ML row records."""
    from importlib.metadata import version

    path = checkpoint_path(model)
    return {
        "ml_model": model,
        "ml_package": ML_PACKAGE,
        "ml_package_version": version(ML_PACKAGE),
        "ml_checkpoint_file": path.name,
        "ml_checkpoint_sha256": sha256_of_file(path),
    }


def load_calculator(model: str, threads: int = 1, device: str = "cpu") -> Any:
    """The ASE calculator of ``model`` (loaded once per job), with ``threads`` torch threads.

    Warnings that SevenNet prints about GPU-only accelerators are silenced: on a
    CPU they do not apply.
    """
    import warnings

    import torch

    torch.set_num_threads(max(1, int(threads)))
    from sevenn.calculator import SevenNetCalculator

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*accelerator.*")
        return SevenNetCalculator(str(checkpoint_path(model)), device=device)


# --- relaxation ---------------------------------------------------------------------------


def relax_atoms(
    atoms: Atoms,
    calculator: Any,
    settings: MLSettings,
    relax_cell: bool = True,
    fix_symmetry: bool | None = None,
) -> tuple[Atoms, dict[str, Any]]:
    """Relax cell (unless ``relax_cell`` is false) and positions of ``atoms`` with the ML calculator.

    Like the DFT relaxation, ``FixSymmetry`` keeps the starting space group, so
    the DFT job that starts from the result sees the same symmetry.

    Returns:
        The relaxed atoms (a copy, calculator attached) and a record: energies
        in eV, forces eV/Å, stress GPa, volumes Å³, wall time s.
    """
    from ase import optimize
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter


    start = time.perf_counter()
    atoms = Atoms(atoms.get_chemical_symbols(), cell=atoms.cell, positions=atoms.positions, pbc=atoms.pbc)
    atoms.calc = calculator
    initial_energy = float(atoms.get_potential_energy())
    initial_volume = float(atoms.get_volume())
    if settings.fix_symmetry if fix_symmetry is None else fix_symmetry:
        atoms.set_constraint(FixSymmetry(atoms, symprec=settings.symprec))
    target = FrechetCellFilter(atoms) if relax_cell else atoms
    optimizer = getattr(optimize, settings.optimizer)(target, logfile=None)
    converged = bool(optimizer.run(fmax=settings.fmax_eV_per_A, steps=settings.max_steps))
    energy = float(atoms.get_potential_energy())
    forces = atoms.get_forces()
    stress = atoms.get_stress(voigt=True) * EV_PER_A3_TO_GPA if relax_cell else np.zeros(6)
    atoms.set_constraint()
    record = {
        "converged": converged,
        "n_steps": int(optimizer.nsteps),
        "initial_energy_eV": initial_energy,
        "initial_energy_per_atom_eV": initial_energy / len(atoms),
        "energy_eV": energy,
        "energy_per_atom_eV": energy / len(atoms),
        "max_force_eV_per_A": float(np.linalg.norm(forces, axis=1).max()) if len(atoms) else 0.0,
        "max_stress_GPa": float(np.abs(stress).max()),
        "initial_volume_A3": initial_volume,
        "final_volume_A3": float(atoms.get_volume()),
        "formula": atoms.get_chemical_formula(mode="hill"),
        "n_atoms": len(atoms),
        "wall_time_s": time.perf_counter() - start,
    }
    return atoms, record
