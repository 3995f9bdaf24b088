"""GPAW plane-wave relaxation of cell and atomic positions.

The cell and positions relax together through ASE's ``FrechetCellFilter``
(forces in eV/Å and stress scaled to the same units) with the optimizer named
in the preset. GPAW refuses to continue when atoms move so that the point-group
symmetry it uses for k-points breaks; with ``fix_symmetry`` (default) ASE's
``FixSymmetry`` constraint keeps the structure in its starting space group so
that cannot happen.

Run under MPI as ``mpiexec -n N gpaw python -m dftscreen.relax ...``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, optimize
from ase.constraints import FixSymmetry
from ase.filters import FrechetCellFilter
from ase.parallel import world
from pymatgen.io.cif import CifWriter

from dftscreen import __version__
from dftscreen.check import read_structure
from dftscreen.dft import (
    EV_PER_A3_TO_GPA,
    atoms_to_structure,
    attach_gpaw,
    common_arguments,
    failure_reason,
    parse_settings,
    report_traceback,
    structure_to_atoms,
    write_on_master,
)
from dftscreen.io import atomic_write_with

STATUS_RELAXED = "relaxed"
STATUS_NOT_CONVERGED = "not_converged"
STATUS_FAILED = "failed"


def relax_atoms(
    atoms: Atoms,
    settings: dict[str, Any],
    workdir: Path,
) -> dict[str, Any]:
    """Relax ``atoms`` in place with GPAW and return a record of the run.

    Args:
        atoms: structure to relax; its calculator is replaced by GPAW.
        settings: resolved preset (see :func:`dftscreen.settings.resolve_settings`).
        workdir: folder for GPAW's text output and the ionic trajectory.

    Returns:
        Energies in eV, forces in eV/Å, stress in GPa, volumes in Å³, wall time in s.
        Raises whatever GPAW raises; the caller turns that into a failure record.
    """
    relax = settings["relax"]
    workdir.mkdir(parents=True, exist_ok=True)
    initial_volume = atoms.get_volume()
    attach_gpaw(atoms, settings["gpaw"], txt=workdir / "relax_gpaw.txt")
    if relax.get("fix_symmetry", True):
        atoms.set_constraint(FixSymmetry(atoms, symprec=relax.get("symprec", 1e-3)))
    cell_filter = FrechetCellFilter(atoms)
    optimizer_class = getattr(optimize, relax["optimizer"])
    optimizer = optimizer_class(
        cell_filter,
        trajectory=str(workdir / "relax.traj"),
        logfile=str(workdir / "relax_optimizer.log"),
    )
    start = time.perf_counter()
    converged = bool(optimizer.run(fmax=relax["fmax_eV_per_A"], steps=relax["max_steps"]))
    wall_time = time.perf_counter() - start

    forces = atoms.get_forces()
    stress = atoms.get_stress(voigt=True) * EV_PER_A3_TO_GPA
    energy = atoms.get_potential_energy()
    calc = atoms.calc
    try:
        magmom = float(calc.get_magnetic_moment())
    except Exception:
        magmom = 0.0
    return {
        "converged": converged,
        "n_ionic_steps": int(optimizer.nsteps),
        "energy_eV": float(energy),
        "free_energy_eV": float(atoms.get_potential_energy(force_consistent=True)),
        "energy_per_atom_eV": float(energy) / len(atoms),
        "max_force_eV_per_A": float(np.linalg.norm(forces, axis=1).max()),
        "forces_eV_per_A": forces.tolist(),
        "stress_GPa": stress.tolist(),
        "max_stress_GPa": float(np.abs(stress).max()),
        "magnetic_moment_muB": magmom,
        "initial_volume_A3": float(initial_volume),
        "final_volume_A3": float(atoms.get_volume()),
        "wall_time_s": wall_time,
        "mpi_ranks": int(world.size),
    }


def run(
    cif: Path,
    structure_id: str,
    settings: dict[str, Any],
    out_json: Path,
    out_cif: Path,
    workdir: Path,
) -> dict[str, Any]:
    """Relax the structure in ``cif`` and write ``out_cif`` (on success) and ``out_json``.

    A DFT failure is not an error of this function: it is recorded in
    ``out_json`` with status ``failed`` and a reason, so that the workflow
    carries on with the other structures.
    """
    record: dict[str, Any] = {
        "structure_id": structure_id,
        "preset": settings.get("preset"),
        "settings": settings,
        "dftscreen_version": __version__,
        "mpi_ranks": int(world.size),
    }
    try:
        import gpaw

        record["gpaw_version"] = gpaw.__version__
        structure, _ = read_structure(cif)
        atoms = structure_to_atoms(structure)
        record["n_atoms"] = len(atoms)
        record["formula"] = atoms.get_chemical_formula(mode="hill")
        record.update(relax_atoms(atoms, settings, workdir))
    except Exception as exc:
        report_traceback()
        record.update(status=STATUS_FAILED, reason=failure_reason(exc), converged=False)
        write_on_master(out_json, record)
        return record

    if record["converged"]:
        record.update(status=STATUS_RELAXED, reason="")
    else:
        record.update(
            status=STATUS_NOT_CONVERGED,
            reason=(
                f"relaxation stopped at the step limit ({settings['relax']['max_steps']} steps) "
                f"with max force {record['max_force_eV_per_A']:.3f} eV/Å "
                f"(threshold {settings['relax']['fmax_eV_per_A']} eV/Å)"
            ),
        )
    relaxed = atoms_to_structure(atoms)
    record["relaxed_cif"] = out_cif.name
    if world.rank == 0:
        atomic_write_with(out_cif, lambda tmp: CifWriter(relaxed).write_file(tmp))
    write_on_master(out_json, record)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = common_arguments("GPAW relaxation of one structure")
    parser.add_argument("--cif", required=True, type=Path, help="input CIF")
    parser.add_argument("--out-cif", required=True, type=Path, help="relaxed structure (CIF)")
    args = parser.parse_args(argv)
    run(
        cif=args.cif,
        structure_id=args.structure_id,
        settings=parse_settings(args.settings),
        out_json=args.out_json,
        out_cif=args.out_cif,
        workdir=args.workdir,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
