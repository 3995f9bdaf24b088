"""Single-point GPAW calculation on the relaxed structure: energy, band gap, moment.

The band gap is the Kohn-Sham gap from the eigenvalues on the SCF k-mesh
(ASE's ``bandgap`` helper), spin-resolved when the calculation is
spin-polarized: 0 for metals. A gap whose band edges fall between mesh points
is overestimated; the k-points of the edges are reported so this can be judged.

Run under MPI as ``mpiexec -n N gpaw python -m dftscreen.properties ...``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from ase import Atoms
from ase.dft.bandgap import bandgap
from ase.parallel import world

from dftscreen import __version__
from dftscreen.check import read_structure
from dftscreen.dft import (
    attach_gpaw,
    common_arguments,
    failure_reason,
    parse_settings,
    report_traceback,
    structure_to_atoms,
    write_on_master,
)
from dftscreen.io import read_json
from dftscreen.relax import STATUS_FAILED

STATUS_DONE = "done"
STATUS_SKIPPED = "skipped"

#: A total moment below this (µB per cell) counts as non-magnetic.
NONMAGNETIC_THRESHOLD_MUB = 0.05


def band_gap_info(calc: Any) -> dict[str, Any]:
    """Band gap (eV), direct gap (eV) and the k-points (fractional, reciprocal cell) of the edges."""
    gap, vbm, cbm = bandgap(calc)
    direct_gap, _, _ = bandgap(calc, direct=True)
    ibz = calc.get_ibz_k_points()
    info: dict[str, Any] = {
        "band_gap_eV": float(gap),
        "direct_band_gap_eV": float(direct_gap),
        "gap_is_direct": bool(gap > 0 and abs(gap - direct_gap) < 1e-6),
        "vbm_kpoint": None,
        "cbm_kpoint": None,
    }
    if gap > 0:
        # (spin, k-index, band) tuples from ASE.
        info["vbm_kpoint"] = [float(x) for x in ibz[vbm[1]]]
        info["cbm_kpoint"] = [float(x) for x in ibz[cbm[1]]]
    return info


def single_point(atoms: Atoms, settings: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Run a GPAW SCF on ``atoms`` and return energy (eV), gap (eV) and moment (µB)."""
    workdir.mkdir(parents=True, exist_ok=True)
    calc = attach_gpaw(atoms, settings["gpaw"], txt=workdir / "properties_gpaw.txt")
    start = time.perf_counter()
    energy = float(atoms.get_potential_energy())
    wall_time = time.perf_counter() - start
    magmom = float(calc.get_magnetic_moment()) if calc.get_number_of_spins() == 2 else 0.0
    record = {
        "energy_eV": energy,
        "energy_per_atom_eV": energy / len(atoms),
        "fermi_level_eV": float(calc.get_fermi_level()),
        "magnetic_moment_muB": magmom,
        "is_magnetic": abs(magmom) >= NONMAGNETIC_THRESHOLD_MUB,
        "n_kpoints_irreducible": int(len(calc.get_ibz_k_points())),
        "wall_time_s": wall_time,
        "mpi_ranks": int(world.size),
    }
    record.update(band_gap_info(calc))
    return record


def run(
    relax_json: Path,
    structure_id: str,
    settings: dict[str, Any],
    out_json: Path,
    workdir: Path,
) -> dict[str, Any]:
    """Compute properties of the relaxed structure recorded in ``relax_json``.

    A failed relaxation gives a record with status ``skipped``; a GPAW failure a
    record with status ``failed`` and a reason.
    """
    relaxed = read_json(relax_json)
    record: dict[str, Any] = {
        "structure_id": structure_id,
        "preset": settings.get("preset"),
        "dftscreen_version": __version__,
    }
    if relaxed.get("status") == STATUS_FAILED or not relaxed.get("relaxed_cif"):
        record.update(status=STATUS_SKIPPED, reason="no relaxed structure (relaxation failed)")
        write_on_master(out_json, record)
        return record
    try:
        structure, _ = read_structure(relax_json.parent / relaxed["relaxed_cif"])
        atoms = structure_to_atoms(structure)
        record.update(single_point(atoms, settings, workdir))
        record.update(status=STATUS_DONE, reason="")
    except Exception as exc:
        report_traceback()
        record.update(status=STATUS_FAILED, reason=failure_reason(exc))
    write_on_master(out_json, record)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = common_arguments("GPAW single point on a relaxed structure")
    parser.add_argument("--relax-json", required=True, type=Path)
    args = parser.parse_args(argv)
    run(
        relax_json=args.relax_json,
        structure_id=args.structure_id,
        settings=parse_settings(args.settings),
        out_json=args.out_json,
        workdir=args.workdir,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
