"""Dynamical stability: finite-displacement phonons (phonopy) with the ML potential and with GPAW.

A structure on the convex hull can still sit on a saddle point of the energy:
an imaginary phonon mode (phonopy prints it as a negative frequency) means it
would distort. Symmetry-constrained relaxations (``FixSymmetry``, which both
relaxations use) make this common for generated high-symmetry cells.

Method (phonopy's finite displacements, Togo and Tanaka, Scr. Mater. 108, 1 (2015)):

- the **supercell** is the given cell repeated ``n_i`` times along each axis,
  the smallest ``n_i`` whose perpendicular width reaches
  ``min_supercell_length_A`` (:func:`supercell_matrix`); the unit cell is the
  cell as given, with no primitive-cell search (:func:`build_phonopy` says why);
- the **forces** of the undisplaced supercell are subtracted from those of each
  displaced one, so the small residual force a relaxation leaves behind does
  not enter the force constants as ``F / u`` (0.01 eV/Å over a 0.01 Å
  displacement would be an error of 1 eV/Å², a tenth of a typical force constant);
- the force constants are **symmetrized** (phonopy's translational and
  permutation symmetrization, the acoustic sum rule), so the three acoustic
  modes at Γ are zero up to rounding;
- frequencies (THz) on a Γ-centred q mesh, along ASE's standard band path of
  the cell and at Γ (:func:`analyse`).

Stability (:func:`analyse`; defaults in :class:`PhononSettings`, the config
schema's ``phonons`` section has the same): a mode below
``-imaginary_tolerance_THz`` (0.1 THz, 3 cm⁻¹) is imaginary, except the three
lowest branches close to Γ, which may dip to ``-acoustic_tolerance_THz``
(0.5 THz). Close to Γ means inside the first shell of q-points commensurate with
the supercell (``|q_i| < 1 / n_i``): there the acoustic branches, whose
frequencies go to zero, are interpolated from force constants truncated at the
supercell's edge, and an error ``δ`` in a force constant shifts ω² by ``δ / m``:
``10⁻³`` eV/Å² on an atom of 30 u already gives 0.2i THz when ω is near zero.
Outside it, a real soft mode's frequency is well measured, and 0.1 THz is a
few times the noise of the symmetrized force constants.

Two stages call it:

- **ML phonons** (:func:`ml_phonons`, :func:`run_ml_phonon_batch`): the
  structure is relaxed again with the same potential to ``ml_fmax_eV_per_A``
  (phonons at a geometry that is not a minimum of the potential show spurious
  imaginary modes), then displaced; batched like the ML relaxation (the model
  is loaded once per job; each record is written as soon as it is done and
  reused when its input, settings and model are unchanged);
- **DFT phonons** (:func:`run_dft_phonons`, ``python -m dftscreen.phonons`` under
  MPI): GPAW at the run's preset on the DFT-relaxed structure; each displaced
  supercell's forces are one file written atomically
  (:func:`dftscreen.layout.phonon_displacement_name`), so a killed job reruns
  only the displacements that did not finish.

Bad input never raises out of a job: too large a supercell, a relaxation that
did not converge, a phonopy or GPAW failure each give a record with a status
(:mod:`dftscreen.status_codes`) and a reason.

Units: frequencies THz (1 THz = 33.356 cm⁻¹ = 4.1357 meV), lengths Å, forces
eV/Å, energies eV, times s, fractional q-points in the reciprocal basis of the given cell.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms

from dftscreen import __version__, status_codes
from dftscreen.cif_reader import read_structure
from dftscreen.dft import (
    attach_gpaw,
    common_arguments,
    failure_reason,
    one_blas_thread_per_rank,
    parse_settings,
    report_traceback,
    structure_to_atoms,
    write_on_master,
)
from dftscreen.io import atomic_write_json, read_json
from dftscreen.layout import (
    PHONON_PRERELAX_GPAW_LOG,
    PHONON_PRERELAX_OPTIMIZER_LOG,
    PHONON_PRERELAXED,
    PHONON_SUBDIR,
    ResultsLayout,
    phonon_displacement_gpaw_log,
    phonon_displacement_name,
)
from dftscreen.ml import MLSettings, model_provenance, relax_atoms, reusable_record
from dftscreen.properties import start_from_relaxed_moments

if TYPE_CHECKING:
    from phonopy import Phonopy

#: q mesh for the minimum and the DOS: phonopy's length rule, ``n_i = round(length * |b_i|)`` (Å).
MESH_LENGTH_A = 40.0
#: Points along the band path.
BAND_PATH_NPOINTS = 120
#: The SCF of a displaced supercell runs until its forces change by less than this (eV/Å)
#: between iterations (GPAW's ``convergence["forces"]``): the test preset's density
#: criterion alone leaves force noise comparable to what a 0.01 Å displacement causes.
DFT_FORCE_CONVERGENCE_EV_PER_A = 1e-4
#: ASE's label of Γ in band paths, and the label written.
GAMMA_ASE, GAMMA = "G", "Γ"

# --- settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhononSettings:
    """How phonons are computed (config section ``phonons``; the schema holds the same defaults).

    ``min_supercell_length_A`` (Å): every perpendicular width of the supercell reaches it.
    ``displacement_A`` (Å): finite displacement. ``imaginary_tolerance_THz`` and
    ``acoustic_tolerance_THz`` (THz): what counts as imaginary (module docstring says why).
    ``ml_fmax_eV_per_A`` (eV/Å): the tight ML relaxation before ML phonons.
    ``dft_max_force_eV_per_A`` (eV/Å): a DFT-relaxed structure with a larger residual force
    is first relaxed further (positions, fixed cell, FixSymmetry). With the residual forces
    subtracted, what is left of a residual force F is the distance to the minimum, about
    F / k: 0.01 eV/Å over a typical bond stiffness of 10 eV/Å² is 0.001 Å, a tenth of the
    displacement, so the force constants are those of the minimum; the workflow's
    presets stop the relaxation at 0.02-0.1 eV/Å, so most structures get a few more steps.
    ``max_supercell_atoms``: a larger supercell gets status ``too_large``.
    """

    min_supercell_length_A: float = 10.0
    displacement_A: float = 0.01
    imaginary_tolerance_THz: float = 0.1
    acoustic_tolerance_THz: float = 0.5
    ml_fmax_eV_per_A: float = 0.001
    dft_max_force_eV_per_A: float = 0.01
    max_supercell_atoms: int = 400

    @classmethod
    def from_config(cls, phonons_config: Mapping[str, Any]) -> PhononSettings:
        """The settings of config section ``phonons``; keys that are not settings (``ml``, ``dft``) are ignored."""
        values: dict[str, Any] = {}
        for field in fields(cls):
            if field.name in phonons_config:
                convert = int if field.name == "max_supercell_atoms" else float
                values[field.name] = convert(phonons_config[field.name])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- phonopy -------------------------------------------------------------------------------------


def supercell_matrix(cell_A: np.ndarray, min_length_A: float) -> np.ndarray:
    """Diagonal 3x3 integer matrix: the smallest ``n_i >= 1`` with ``n_i`` x width_i >= ``min_length_A``.

    width_i (Å) is the cell's perpendicular width along axis i (the distance between the
    two faces the other two axes span): volume / |a_j x a_k| = 1 / |b_i|.
    """
    reciprocal = np.linalg.inv(np.asarray(cell_A, dtype=float)).T  # rows b_i, without 2π
    widths = 1.0 / np.linalg.norm(reciprocal, axis=1)
    counts = [max(1, math.ceil(min_length_A / width - 1e-9)) for width in widths]
    return np.diag(counts).astype(int)


def _phonopy_atoms(atoms: Atoms) -> Any:
    from phonopy.structure.atoms import PhonopyAtoms

    moments = atoms.get_initial_magnetic_moments()
    return PhonopyAtoms(
        symbols=atoms.get_chemical_symbols(),
        cell=np.asarray(atoms.cell),
        scaled_positions=atoms.get_scaled_positions(),
        magnetic_moments=moments if np.any(moments) else None,
    )


def build_phonopy(atoms: Atoms, settings: PhononSettings) -> Phonopy:
    """A :class:`phonopy.Phonopy` of ``atoms`` with its symmetry-reduced displacements generated.

    The unit cell is the cell as given and no primitive cell is searched for
    (``primitive_matrix="P"``; phonopy 4 reads ``None`` as ``"auto"``): the workflow's
    cells are the generated ones, small and usually primitive already, and a primitive
    search with a tolerance could fold a nearly-symmetric generated cell onto a smaller
    one that is not its own. With the
    given cell, q-points are fractional in its reciprocal basis (what the records
    report) and ASE's band path of the same cell applies; a conventional cell only
    folds more branches onto Γ, which changes no frequency.
    Displacements: ``displacement_A``, plus and minus only where symmetry does not
    give the opposite one (phonopy's ``"auto"``).
    """
    from phonopy import Phonopy

    matrix = supercell_matrix(np.asarray(atoms.cell), settings.min_supercell_length_A)
    phonon = Phonopy(_phonopy_atoms(atoms), supercell_matrix=matrix, primitive_matrix="P", log_level=0)
    phonon.generate_displacements(distance=settings.displacement_A, is_plusminus="auto")
    return phonon


def _to_atoms(cell: Any) -> Atoms:
    atoms = Atoms(symbols=list(cell.symbols), cell=np.asarray(cell.cell), pbc=True,
                  scaled_positions=np.asarray(cell.scaled_positions))
    if cell.magnetic_moments is not None:
        atoms.set_initial_magnetic_moments(np.asarray(cell.magnetic_moments, dtype=float))
    return atoms


def displaced_supercells(phonon: Phonopy) -> list[Atoms]:
    """The displaced supercells as ASE atoms, in phonopy's order (initial moments carried over)."""
    return [_to_atoms(cell) for cell in phonon.supercells_with_displacements]


def undisplaced_supercell(phonon: Phonopy) -> Atoms:
    """The supercell itself: its forces (the relaxation's residual ones) are subtracted from the displaced ones'."""
    return _to_atoms(phonon.supercell)


# --- analysis ---------------------------------------------------------------------------------------


def _reduced(qpoints: np.ndarray) -> np.ndarray:
    """q-points folded into [-0.5, 0.5)."""
    return qpoints - np.round(qpoints)


def imaginary_mode_counts(
    qpoints: np.ndarray, frequencies_THz: np.ndarray, supercell_counts: Sequence[int], settings: PhononSettings
) -> np.ndarray:
    """Imaginary modes at each q-point (frequencies ascending per q, THz), Γ's acoustic noise excepted.

    A mode below ``-imaginary_tolerance_THz`` counts, except that at q-points inside the
    supercell's first commensurate shell (|q_i| < 1 / n_i, Γ included) the three lowest
    branches count only below ``-acoustic_tolerance_THz``.
    """
    freqs = np.sort(np.asarray(frequencies_THz, dtype=float), axis=1)
    near_gamma = np.all(np.abs(_reduced(np.asarray(qpoints))) * np.asarray(supercell_counts) < 1 - 1e-9, axis=1)
    below = freqs < -settings.imaginary_tolerance_THz
    acoustic = np.zeros_like(below)
    acoustic[:, : min(3, freqs.shape[1])] = True
    exempt = acoustic & near_gamma[:, None] & (freqs >= -settings.acoustic_tolerance_THz)
    return np.sum(below & ~exempt, axis=1)


def _band_structure(phonon: Phonopy, cell: np.ndarray) -> tuple[dict[str, Any], np.ndarray, np.ndarray, dict]:
    """Frequencies (THz) along ASE's standard band path of ``cell``, its plot axis and its special points."""
    from ase.cell import Cell

    path = Cell(cell).bandpath(npoints=BAND_PATH_NPOINTS)
    qpoints = np.asarray(path.kpts)
    phonon.run_qpoints(qpoints)
    freqs = np.asarray(phonon.qpoints.frequencies)
    distances, label_distances, labels = path.get_linear_kpoint_axis()
    band = {
        "distances": np.round(distances, 5),
        "frequencies_THz": np.round(freqs, 4),
        "labels": [GAMMA if label == GAMMA_ASE else label for label in labels],
        "label_distances": np.round(label_distances, 5),
        "path": path.path,
    }
    return band, qpoints, freqs, dict(path.special_points)


def qpoint_label(qpoint: Sequence[float], special_points: Mapping[str, Sequence[float]]) -> str:
    """The special point's label (Γ for Gamma) at ``qpoint``, up to a reciprocal lattice vector, else ``""``."""
    q = np.asarray(qpoint, dtype=float)
    if np.allclose(_reduced(q), 0.0, atol=1e-6):
        return GAMMA
    for label, point in special_points.items():
        if np.allclose(_reduced(q - np.asarray(point, dtype=float)), 0.0, atol=1e-6):
            return GAMMA if label == GAMMA_ASE else label
    return ""


def special_point_minima(phonon: Phonopy, special_points: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """The lowest frequency (THz, negative = imaginary) at each special point of the cell's band path
    (Γ, X, M, R for a cubic cell), keyed by label: where a soft mode sits, also when it is not the
    lowest of all (cubic SrTiO3's antiferrodistortive mode at R beside its polar mode at Γ)."""
    labels = sorted(special_points)
    phonon.run_qpoints([list(special_points[label]) for label in labels])
    lowest = np.min(np.asarray(phonon.qpoints.frequencies), axis=1)
    return {GAMMA if label == GAMMA_ASE else label: float(value) for label, value in zip(labels, lowest, strict=True)}


def analyse(
    phonon: Phonopy,
    forces: Sequence[np.ndarray],
    settings: PhononSettings,
    reference_forces: np.ndarray | None = None,
) -> dict[str, Any]:
    """Force constants from ``forces`` (eV/Å, one (n_supercell, 3) array per displacement) and what they say.

    ``reference_forces`` (the undisplaced supercell's, eV/Å) are subtracted first. The force
    constants are symmetrized (acoustic sum rule). The minimum frequency (THz; negative =
    imaginary, phonopy's convention) is searched at Γ, on a Γ-centred mesh
    (:data:`MESH_LENGTH_A`) and along ASE's band path of the cell. ``n_imaginary_modes`` is the
    largest number of imaginary modes at any one q-point (:func:`imaginary_mode_counts`; e.g. 3
    for cubic BaTiO3's triply degenerate soft mode at Γ); ``dynamically_stable`` is its being 0.
    Also returns Γ's frequencies, the lowest frequency at each special point
    (:func:`special_point_minima`), the band structure and the total DOS (states/THz per cell).
    """
    displaced = np.asarray(forces, dtype=float)
    if reference_forces is not None:
        displaced = displaced - np.asarray(reference_forces, dtype=float)[None]
    phonon.forces = displaced
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants(show_drift=False)
    counts = np.diag(phonon.supercell_matrix).astype(int)
    phonon.run_qpoints([[0.0, 0.0, 0.0]])
    gamma = np.asarray(phonon.qpoints.frequencies)
    phonon.run_mesh(MESH_LENGTH_A, is_gamma_center=True)
    mesh = phonon.mesh
    phonon.run_total_dos()
    dos = phonon.total_dos
    band, path_q, path_f, special = _band_structure(phonon, np.asarray(phonon.unitcell.cell))
    qpoints = np.concatenate([np.zeros((1, 3)), np.asarray(mesh.qpoints), path_q])
    freqs = np.concatenate([gamma, np.asarray(mesh.frequencies), path_f])
    lowest = np.min(freqs, axis=1)
    where = int(np.argmin(lowest))
    n_imaginary = int(np.max(imaginary_mode_counts(qpoints, freqs, counts, settings)))
    return {
        "min_frequency_THz": float(lowest[where]),
        "min_frequency_qpoint": [float(x) for x in _reduced(qpoints[where]) + 0.0],
        "min_frequency_qpoint_label": qpoint_label(qpoints[where], special),
        "n_imaginary_modes": n_imaginary,
        "dynamically_stable": n_imaginary == 0,
        "gamma_frequencies_THz": [float(f) for f in np.sort(gamma[0])],
        "special_point_min_frequencies_THz": special_point_minima(phonon, special),
        "max_frequency_THz": float(np.max(freqs)),
        "q_mesh": [int(n) for n in mesh.mesh_numbers],
        "band_structure": band,
        "dos": {"frequencies_THz": np.round(dos.frequency_points, 4), "dos": np.round(dos.dos, 6)},
    }


# --- forces, with reuse ---------------------------------------------------------------------------------


def supercell_fingerprint(atoms: Atoms, base: str) -> str:
    """What makes a supercell's forces reusable: ``base`` (structure and settings) and the supercell itself."""
    digest = hashlib.sha256(base.encode())
    digest.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    digest.update(np.round(np.asarray(atoms.cell), 6).tobytes())
    digest.update(np.round(atoms.positions, 6).tobytes())
    digest.update(np.round(atoms.get_initial_magnetic_moments(), 3).tobytes())
    return digest.hexdigest()


def _reusable_forces(path: Path, fingerprint: str, n_atoms: int) -> np.ndarray | None:
    """Forces of a finished displacement file made from the same supercell and settings (read on rank 0)."""
    from ase.parallel import broadcast, world

    forces = None
    if world.rank == 0:
        record = reusable_record(path, fingerprint)
        if record is not None and np.shape(record.get("forces_eV_per_A")) == (n_atoms, 3):
            forces = np.asarray(record["forces_eV_per_A"], dtype=float)
    return broadcast(forces, root=0)


def supercell_forces(
    supercells: Sequence[Atoms],
    force_calculator: Callable[[Atoms, int], np.ndarray],
    record_path: Callable[[int], Path] | None = None,
    fingerprint_base: str = "",
) -> tuple[list[np.ndarray], int, int]:
    """Forces (eV/Å) of each supercell, ``force_calculator(atoms, index)`` for those not already done.

    With ``record_path``, supercell ``i``'s forces are written to ``record_path(i)`` atomically
    (rank 0) as soon as they are computed, and a file whose fingerprint
    (:func:`supercell_fingerprint`) matches is reused instead. Returns the forces, how many
    were computed and how many reused.
    """
    forces: list[np.ndarray] = []
    computed = reused = 0
    for index, atoms in enumerate(supercells):
        fingerprint = supercell_fingerprint(atoms, fingerprint_base)
        found = _reusable_forces(record_path(index), fingerprint, len(atoms)) if record_path else None
        if found is not None:
            forces.append(found)
            reused += 1
            continue
        start = time.perf_counter()
        result = np.asarray(force_calculator(atoms, index), dtype=float)
        forces.append(result)
        computed += 1
        if record_path is not None:
            write_on_master(record_path(index), {
                "index": index, "fingerprint": fingerprint, "n_atoms": len(atoms),
                "forces_eV_per_A": result, "wall_time_s": time.perf_counter() - start,
            })
    return forces, computed, reused


def size_problem(atoms: Atoms, settings: PhononSettings) -> tuple[np.ndarray, int, str | None]:
    """The supercell matrix, its atom count, and why it is too large (``None`` when it is not)."""
    matrix = supercell_matrix(np.asarray(atoms.cell), settings.min_supercell_length_A)
    n_atoms = int(round(len(atoms) * abs(np.linalg.det(matrix))))
    if n_atoms > settings.max_supercell_atoms:
        counts = "x".join(str(n) for n in np.diag(matrix))
        return matrix, n_atoms, (
            f"phonon supercell {counts} of the {len(atoms)}-atom cell has {n_atoms} atoms, more than "
            f"phonons.max_supercell_atoms = {settings.max_supercell_atoms}")
    return matrix, n_atoms, None


def tiled_unit_cell_forces(phonon: Phonopy, unit_forces: np.ndarray) -> np.ndarray:
    """The undisplaced supercell's forces (eV/Å) from the unit cell's: each atom gets its unit-cell atom's."""
    supercell = phonon.supercell
    unit_index = [supercell.u2u_map[int(s)] for s in supercell.s2u_map]
    return np.asarray(unit_forces, dtype=float)[unit_index]


def compute_phonons(
    atoms: Atoms,
    settings: PhononSettings,
    force_calculator: Callable[[Atoms, int], np.ndarray],
    record_path: Callable[[int], Path] | None = None,
    fingerprint_base: str = "",
    reference_from_unit_cell: bool = False,
) -> dict[str, Any]:
    """Phonons of ``atoms`` with forces from ``force_calculator(supercell, index)`` (eV/Å).

    Index 0 is the undisplaced supercell, 1..n the displaced ones; with ``record_path``
    their forces are files reused by a rerun (:func:`supercell_forces`). With
    ``reference_from_unit_cell``, index 0's forces are the unit cell's, tiled
    (:func:`tiled_unit_cell_forces`): the same for a potential, one large calculation
    fewer (GPAW keeps the supercell, whose k-mesh is the displaced ones'). Returns a record:
    status ``computed`` (or ``too_large``) and reason, the supercell, the force counts,
    ``phonon_wall_time_s`` and :func:`analyse`'s keys. Errors propagate (callers record them).
    """
    start = time.perf_counter()
    matrix, n_atoms, problem = size_problem(atoms, settings)
    record: dict[str, Any] = {
        "supercell_matrix": matrix.tolist(),
        "n_supercell_atoms": n_atoms,
    }
    if problem is not None:
        return {**record, "status": status_codes.TOO_LARGE, "reason": problem}
    phonon = build_phonopy(atoms, settings)
    supercells = [undisplaced_supercell(phonon), *displaced_supercells(phonon)]
    if reference_from_unit_cell:
        unit_forces = force_calculator(atoms.copy(), 0)
        forces, computed, reused = supercell_forces(
            supercells[1:], lambda cell, i: force_calculator(cell, i + 1), None, fingerprint_base)
        forces, computed = [tiled_unit_cell_forces(phonon, unit_forces), *forces], computed + 1
    else:
        forces, computed, reused = supercell_forces(supercells, force_calculator, record_path, fingerprint_base)
    record.update(
        n_displacements=len(supercells) - 1,
        n_force_calculations=len(supercells),
        n_computed=computed,
        n_reused=reused,
        residual_max_force_eV_per_A=float(np.linalg.norm(forces[0], axis=1).max()),
    )
    record.update(analyse(phonon, forces[1:], settings, reference_forces=forces[0]))
    record.update(status=status_codes.COMPUTED, reason="", phonon_wall_time_s=time.perf_counter() - start)
    return record


# --- ML phonons -----------------------------------------------------------------------------------------


def ml_phonons(atoms: Atoms, calculator: Any, ml_settings: MLSettings, settings: PhononSettings) -> dict[str, Any]:
    """ML phonons of ``atoms``: a tight relaxation with the same potential, then displacements.

    The relaxation (:func:`dftscreen.ml.relax_atoms`, FixSymmetry when the ML settings say so)
    moves the positions only, with BFGS, to ``settings.ml_fmax_eV_per_A``: phonons need the
    forces at a minimum, and the ML stage has relaxed the cell already. Tightening the cell
    too (FIRE with the cell filter, the stage's own) took 35-280 steps on 5-atom perovskites
    from the stage's geometry, positions alone with BFGS 10-27 (bench/README.md, "Phonons").
    One that does not converge gives status ``skipped`` and computes nothing. Returns the
    record of :func:`compute_phonons` with ``relax_*`` keys; ``relax_wall_time_s`` and
    ``phonon_wall_time_s`` (s) apart.
    """
    _, _, problem = size_problem(atoms, settings)
    if problem is not None:
        return {"status": status_codes.TOO_LARGE, "reason": problem}
    tight = replace(ml_settings, fmax_eV_per_A=settings.ml_fmax_eV_per_A, optimizer="BFGS")
    relaxed, relax = relax_atoms(atoms, calculator, tight, relax_cell=False)
    record: dict[str, Any] = {
        "relax_converged": relax["converged"],
        "relax_n_steps": relax["n_steps"],
        "relax_max_force_eV_per_A": relax["max_force_eV_per_A"],
        "relax_energy_per_atom_eV": relax["energy_per_atom_eV"],
        "relax_volume_A3": relax["final_volume_A3"],
        "relax_wall_time_s": relax["wall_time_s"],
    }
    if not relax["converged"]:
        return {**record, "status": status_codes.SKIPPED, "reason": (
            f"the ML relaxation to {tight.fmax_eV_per_A:g} eV/Å did not converge in {relax['n_steps']} steps "
            f"(max force {relax['max_force_eV_per_A']:.4f} eV/Å): residual forces make phonons meaningless")}
    geometry = Atoms(relaxed.get_chemical_symbols(), cell=relaxed.cell, positions=relaxed.positions, pbc=True)

    def forces(supercell: Atoms, index: int) -> np.ndarray:
        supercell.calc = calculator
        return supercell.get_forces().copy()

    record.update(compute_phonons(geometry, settings, forces, reference_from_unit_cell=True))
    return record


def ml_phonon_fingerprint(
    cif: str | os.PathLike[str], ml_settings: MLSettings, settings: PhononSettings, checkpoint_sha256: str
) -> str:
    """What makes an ML phonon record reusable: the input CIF's bytes, both settings and the model file.

    A missing file hashes as empty (its record then fails with the reading error)."""
    digest = hashlib.sha256(Path(cif).read_bytes() if Path(cif).is_file() else b"")
    digest.update(json.dumps([ml_settings.to_dict(), settings.to_dict()], sort_keys=True).encode())
    digest.update(checkpoint_sha256.encode())
    return digest.hexdigest()


def ml_phonon_record(
    structure_id: str, cif: str | os.PathLike[str], calculator: Any, ml_settings: MLSettings,
    settings: PhononSettings, provenance: dict[str, Any], fingerprint: str,
) -> dict[str, Any]:
    """ML phonons of one CIF as a record; any error becomes status ``failed`` with a reason."""
    record: dict[str, Any] = {
        "structure_id": structure_id, "input_cif": str(cif), **provenance, "ml_settings": ml_settings.to_dict(),
        "phonon_settings": settings.to_dict(), "fingerprint": fingerprint, "dftscreen_version": __version__,
    }
    start = time.perf_counter()
    try:
        structure, _ = read_structure(cif)
        atoms = structure_to_atoms(structure)
        record.update(formula=atoms.get_chemical_formula(mode="hill"), n_atoms=len(atoms))
        record.update(ml_phonons(atoms, calculator, ml_settings, settings))
    except Exception as exc:  # noqa: BLE001 - one structure's failure never stops the batch
        record.update(status=status_codes.FAILED, reason=f"ML phonons: {type(exc).__name__}: {exc}")
    record["wall_time_s"] = time.perf_counter() - start
    return record


def run_ml_phonon_batch(
    items: list[tuple[str, str]],
    layout: ResultsLayout,
    ml_settings: MLSettings,
    settings: PhononSettings,
    calculator_factory: Callable[[], Any],
    out_json: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """ML phonons of every (structure id, CIF) of ``items``, reusing finished records.

    The CIF is the ML-relaxed one (or the generated one when the ML relaxation gave none).
    Each record goes to :meth:`ResultsLayout.ml_phonon_record` atomically as soon as it is
    done; a matching fingerprint (:func:`ml_phonon_fingerprint`) reuses it. The model is
    loaded once, and only if something needs computing. Returns (and writes to
    ``out_json``) the ids, which were computed and which reused, and the wall time (s).
    """
    provenance = model_provenance(ml_settings.model)
    calculator = None
    computed, reused = [], []
    start = time.perf_counter()
    for structure_id, cif in items:
        path = layout.ml_phonon_record(structure_id)
        fingerprint = ml_phonon_fingerprint(cif, ml_settings, settings, provenance["ml_checkpoint_sha256"])
        if reusable_record(path, fingerprint) is not None:
            reused.append(structure_id)
            continue
        if calculator is None:
            calculator = calculator_factory()
        record = ml_phonon_record(structure_id, cif, calculator, ml_settings, settings, provenance, fingerprint)
        atomic_write_json(path, record)
        computed.append(structure_id)
    summary = {
        "structure_ids": [sid for sid, _ in items],
        "computed": computed,
        "reused": reused,
        "wall_time_s": time.perf_counter() - start,
        "phonon_settings": settings.to_dict(),
        **provenance,
    }
    if out_json is not None:
        atomic_write_json(out_json, summary)
    return summary


# --- DFT phonons ----------------------------------------------------------------------------------------


def supercell_kpts(unit_atoms: Atoms, kpt_density_per_A: float, matrix: np.ndarray) -> dict[str, Any]:
    """GPAW ``kpts`` of the supercell: the unit cell's Γ-centred mesh at ``kpt_density_per_A``
    (as :func:`dftscreen.dft.gpaw_calculator_kwargs` asks GPAW for it) divided by the repeats,
    rounded up, so the supercell samples the same Brillouin zone as the unit cell's
    relaxation (exactly when the repeats divide the mesh)."""
    from ase.calculators.calculator import kpts2sizeandoffsets

    size, _ = kpts2sizeandoffsets(density=kpt_density_per_A, gamma=True, atoms=unit_atoms)
    counts = np.diag(np.asarray(matrix))
    return {"size": [max(1, math.ceil(int(k) / int(n))) for k, n in zip(size, counts)], "gamma": True}


def phonon_gpaw_settings(gpaw_settings: Mapping[str, Any], unit_atoms: Atoms, matrix: np.ndarray) -> dict[str, Any]:
    """The preset's ``gpaw`` settings for a supercell: its k-mesh (:func:`supercell_kpts`) and the
    SCF run to converged forces (:data:`DFT_FORCE_CONVERGENCE_EV_PER_A`, unless tighter already)."""
    result = dict(gpaw_settings)
    if "kpts" not in result:  # a raw kpts (a molecule's) is kept as the user gave it
        result["kpts"] = supercell_kpts(unit_atoms, float(result["kpt_density_per_A"]), matrix)
    convergence = dict(result.get("convergence") or {})
    convergence["forces"] = min(float(convergence.get("forces") or math.inf), DFT_FORCE_CONVERGENCE_EV_PER_A)
    result["convergence"] = convergence
    return result


def settings_key(*parts: Any) -> str:
    """SHA-256 of JSON-serialised parts (settings, structure bytes as hex)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def dft_prerelax(
    atoms: Atoms, gpaw_settings: Mapping[str, Any], relax_settings: Mapping[str, Any],
    settings: PhononSettings, phonon_dir: Path, key: str,
) -> tuple[Atoms, dict[str, Any]]:
    """Relax positions (fixed cell, FixSymmetry, BFGS) at the preset's settings to ``dft_max_force_eV_per_A``.

    The result is kept in ``phonon_dir/prerelaxed.json`` under ``key`` and reused by a rerun.
    Returns the atoms and ``prerelax_*`` keys (converged, steps, max force eV/Å, wall time s).
    """
    from ase.constraints import FixSymmetry
    from ase.optimize import BFGS

    saved_path = phonon_dir / PHONON_PRERELAXED
    saved = reusable_record(saved_path, key)
    if saved is not None:
        atoms = atoms.copy()
        atoms.positions = np.asarray(saved["positions_A"], dtype=float)
        return atoms, {k: v for k, v in saved.items() if k.startswith("prerelax_")}
    start = time.perf_counter()
    work = atoms.copy()
    attach_gpaw(work, dict(gpaw_settings), txt=phonon_dir / PHONON_PRERELAX_GPAW_LOG)
    work.set_constraint(FixSymmetry(work, symprec=float(relax_settings.get("symprec", 1e-3))))
    steps = int(relax_settings.get("max_steps", 50))
    optimizer = BFGS(work, logfile=str(phonon_dir / PHONON_PRERELAX_OPTIMIZER_LOG))
    converged = bool(optimizer.run(fmax=settings.dft_max_force_eV_per_A, steps=steps))
    max_force = float(np.linalg.norm(work.get_forces(), axis=1).max())
    work.set_constraint()
    info = {
        "prerelax_converged": converged, "prerelax_n_steps": int(optimizer.nsteps),
        "prerelax_max_force_eV_per_A": max_force, "prerelax_wall_time_s": time.perf_counter() - start,
    }
    write_on_master(saved_path, {"fingerprint": key, "positions_A": work.positions, **info})
    result = atoms.copy()
    result.positions = work.positions
    return result, info


def _gpaw_forces(gpaw_settings: dict[str, Any], phonon_dir: Path) -> Callable[[Atoms, int], np.ndarray]:
    def forces(supercell: Atoms, index: int) -> np.ndarray:
        txt = phonon_dir / phonon_displacement_gpaw_log(index)
        attach_gpaw(supercell, gpaw_settings, txt=txt)
        return supercell.get_forces().copy()
    return forces


def run_dft_phonons(
    structure_id: str,
    relaxed_cif: str | os.PathLike[str],
    relax_record: Mapping[str, Any],
    gpaw_settings: dict[str, Any],
    settings: PhononSettings,
    workdir: Path,
    out_json: Path,
    force_calculator: Callable[[Atoms, int], np.ndarray] | None = None,
) -> dict[str, Any]:
    """DFT phonons of a DFT-relaxed structure; every MPI rank calls it, rank 0 writes.

    ``gpaw_settings`` is the resolved settings dictionary the properties stage gets (keys
    ``gpaw``, ``relax``, ``preset``). A relaxation that failed or did not converge gives
    status ``skipped``; too large a supercell ``too_large``; an error ``failed``, each with a
    reason and nothing computed. A residual force above ``dft_max_force_eV_per_A`` is relaxed
    away first (:func:`dft_prerelax`). Each supercell's forces are a file in
    ``workdir/phonons`` (:func:`supercell_forces`), reused by a rerun (also after a change of
    the tolerances, which only the analysis uses). ``force_calculator`` replaces GPAW and
    skips the pre-relaxation (tests); the record (written to ``out_json``) has ``core_hours`` = wall
    time x MPI ranks.
    """
    from ase.parallel import world

    start = time.perf_counter()
    phonon_dir = Path(workdir) / PHONON_SUBDIR
    record: dict[str, Any] = {
        "structure_id": structure_id, "preset": gpaw_settings.get("preset"), "dftscreen_version": __version__,
        "phonon_settings": settings.to_dict(), "mpi_ranks": int(world.size),
    }
    status = relax_record.get("status")
    if status != status_codes.RELAXED:
        reason = ("the DFT relaxation did not converge: residual forces make phonons meaningless"
                  if status == status_codes.NOT_CONVERGED else "no relaxed structure (relaxation failed)")
        record.update(status=status_codes.SKIPPED, reason=reason)
        write_on_master(Path(out_json), record)
        return record
    try:
        record.update(_dft_phonons(relaxed_cif, relax_record, gpaw_settings, settings, phonon_dir, force_calculator))
    except Exception as exc:  # noqa: BLE001 - recorded, never raised out of the job
        report_traceback()
        record.update(status=status_codes.FAILED, reason=f"phonons: {failure_reason(exc)}")
    record["wall_time_s"] = time.perf_counter() - start
    record["core_hours"] = record["wall_time_s"] * world.size / 3600.0
    write_on_master(Path(out_json), record)
    return record


def _dft_phonons(
    relaxed_cif: str | os.PathLike[str], relax_record: Mapping[str, Any], settings_all: dict[str, Any],
    settings: PhononSettings, phonon_dir: Path, force_calculator: Callable[[Atoms, int], np.ndarray] | None,
) -> dict[str, Any]:
    structure, _ = read_structure(relaxed_cif)
    atoms = structure_to_atoms(structure)
    start_from_relaxed_moments(atoms, relax_record.get("local_magnetic_moments_muB"))
    matrix, _, problem = size_problem(atoms, settings)
    if problem is not None:
        return {"status": status_codes.TOO_LARGE, "reason": problem}
    phonon_dir.mkdir(parents=True, exist_ok=True)
    residual = relax_record.get("max_force_eV_per_A")
    record: dict[str, Any] = {"formula": atoms.get_chemical_formula(mode="hill"), "n_atoms": len(atoms),
                              "relax_max_force_eV_per_A": residual, "prerelaxed": False}
    # What the forces depend on (the tolerances do not: changing them reuses every file).
    key = settings_key(Path(relaxed_cif).read_bytes().hex(), settings_all.get("gpaw"),
                       (settings_all.get("relax") or {}).get("symprec"), settings.dft_max_force_eV_per_A)
    if force_calculator is None and (residual is None or float(residual) > settings.dft_max_force_eV_per_A):
        atoms, info = dft_prerelax(atoms, settings_all["gpaw"], settings_all.get("relax") or {}, settings,
                                   phonon_dir, key)
        record.update(info, prerelaxed=True)
        if not info["prerelax_converged"]:
            return {**record, "status": status_codes.SKIPPED, "reason": (
                f"the positions relaxation before phonons did not reach {settings.dft_max_force_eV_per_A:g} eV/Å "
                f"in {info['prerelax_n_steps']} steps (max force {info['prerelax_max_force_eV_per_A']:.4f} eV/Å): "
                "residual forces make phonons meaningless")}
    if force_calculator is None:
        gpaw = phonon_gpaw_settings(settings_all["gpaw"], atoms, matrix)
        record["supercell_kpts"] = gpaw.get("kpts")
        force_calculator = _gpaw_forces(gpaw, phonon_dir)
        key = settings_key(key, gpaw)
    record.update(compute_phonons(atoms, settings, force_calculator,
                                  record_path=lambda i: phonon_dir / phonon_displacement_name(i),
                                  fingerprint_base=key))
    return record


def main(argv: list[str] | None = None) -> int:
    one_blas_thread_per_rank()
    parser: argparse.ArgumentParser = common_arguments("Finite-displacement phonons (phonopy) with GPAW")
    parser.add_argument("--relaxed-cif", required=True, type=Path)
    parser.add_argument("--relax-json", required=True, type=Path)
    parser.add_argument("--phonon-settings", required=True, help="config section phonons as JSON text")
    args = parser.parse_args(argv)
    run_dft_phonons(
        structure_id=args.structure_id,
        relaxed_cif=args.relaxed_cif,
        relax_record=read_json(args.relax_json),
        gpaw_settings=parse_settings(args.settings),
        settings=PhononSettings.from_config(json.loads(args.phonon_settings)),
        workdir=args.workdir,
        out_json=args.out_json,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
