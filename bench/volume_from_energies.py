"""An element's equilibrium volume from its energies, beside the one its stress gives (not run in CI).

Explains an outlier of ``bench/reference_volumes.py``: the workflow relaxes cells on
the stress, so a volume off the all-electron V0 is either the PAW setup's (the
energy minimum is off too) or the stress's (the energy minimum is right, the
stress is not zero there: an incomplete basis, a Pulay correction that misses).

For the Δ-test's structure of the element (ASE's ``dcdft`` collection, the same
crystal as the workflow's reference where ``same`` says yes), the cell is scaled at
fixed shape to volumes per atom of WIEN2k V0 x (0.94 ... 1.10); at each, one GPAW
SCF with the preset's calculator (``dftscreen.dft.attach_gpaw``, optionally with a
different cutoff or without the Pulay correction) gives the energy and the stress.
ASE's Birch-Murnaghan fit of E(V) gives V0 and B; the pressure -tr(σ)/3 is
interpolated linearly to zero between the two volumes where it changes sign.

Run under MPI from the project root (rank 0 writes the record, atomically)::

    PYTHONPATH=src:bench OMP_NUM_THREADS=1 flock /tmp/dftscreen-cpu.lock nice -n 19 \\
        mpiexec --bind-to none -n 2 .venv/bin/python -m gpaw python -m volume_from_energies \\
        --element Ba [--ecut-eV 1200] [--kpt-density 8] [--no-dedecut] [--factors 1.0,1.03,1.06,1.09,1.12]

Records: ``bench/records/volume_from_energies/<preset>[_ecutN][_kN][_nbandsN][_nodedecut]/<El>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from ase.collections import dcdft
from ase.db import connect
from ase.eos import EquationOfState
from ase.parallel import parprint, world
from ase.units import GPa

from dftscreen.dft import attach_gpaw, one_blas_thread_per_rank
from dftscreen.io import atomic_write_json
from dftscreen.settings import initial_magmoms, resolve_settings

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "records" / "volume_from_energies"
#: Volumes per atom, as fractions of WIEN2k V0: wide enough for a 5 % outlier on either side.
VOLUME_FACTORS = (0.94, 0.97, 1.00, 1.03, 1.06, 1.09, 1.12)


def wien2k_v0(element: str) -> float:
    """WIEN2k all-electron V0 of the Δ-test (Å³/atom), from ASE's dcdft collection."""
    return float(next(connect(dcdft.filename).select(name=element)).wien2k_volume)


def pressure_zero_volume(volumes_A3: list[float], pressures_GPa: list[float]) -> float | None:
    """Volume (Å³/atom) where the pressure changes sign, linear between the two points around it."""
    pairs = sorted(zip(volumes_A3, pressures_GPa))
    for (v1, p1), (v2, p2) in zip(pairs, pairs[1:]):
        if p1 >= 0.0 >= p2:
            return v1 + (v2 - v1) * p1 / (p1 - p2)
    return None


def energy_volume_points(
    element: str, gpaw_settings: dict[str, Any], workdir: Path, factors: tuple[float, ...] = VOLUME_FACTORS
) -> list[dict[str, float]]:
    """Energy (eV/atom) and pressure (GPa) of the Δ-test cell at each of ``factors`` x WIEN2k V0."""
    base = dcdft[element]
    base.set_initial_magnetic_moments(initial_magmoms(base.get_chemical_symbols()))
    n = len(base)
    v0 = wien2k_v0(element)
    points = []
    for factor in factors:
        atoms = base.copy()
        atoms.set_cell(base.cell * (factor * v0 * n / base.get_volume()) ** (1 / 3), scale_atoms=True)
        attach_gpaw(atoms, gpaw_settings, workdir / f"{element}_{factor:.2f}.txt")
        started = time.time()
        energy = atoms.get_potential_energy()
        stress = atoms.get_stress(voigt=False)
        points.append({
            "volume_per_atom_A3": atoms.get_volume() / n,
            "energy_per_atom_eV": energy / n,
            "pressure_GPa": float(-np.trace(stress) / 3 / GPa),
            "wall_time_s": round(time.time() - started, 1),
        })
        parprint(f"{element} V {points[-1]['volume_per_atom_A3']:.3f} E {points[-1]['energy_per_atom_eV']:.6f} "
                 f"P {points[-1]['pressure_GPa']:+.4f} GPa ({points[-1]['wall_time_s']:.0f} s)", flush=True)
    return points


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--element", required=True)
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--ecut-eV", type=float, default=None, help="cutoff instead of the preset's")
    parser.add_argument("--no-dedecut", action="store_true", help="no Pulay-stress correction")
    parser.add_argument("--kpt-density", type=float, default=None, help="k-points per Å⁻¹ instead of the preset's")
    parser.add_argument("--nbands", default=None,
                        help="GPAW nbands (e.g. -5: 5 empty bands; '150%%') instead of GPAW's default")
    parser.add_argument("--factors", default=None, help="volumes as comma-separated fractions of V0 "
                        f"(default {','.join(map(str, VOLUME_FACTORS))}; at least 5 for the fit)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dftscreen_volume_from_energies"))
    args = parser.parse_args()
    one_blas_thread_per_rank()

    gpaw_settings = dict(resolve_settings(args.preset, {}, {}, None)["gpaw"])
    variant = args.preset
    if args.ecut_eV is not None:
        gpaw_settings["ecut_eV"] = args.ecut_eV
        variant += f"_ecut{args.ecut_eV:.0f}"
    if args.kpt_density is not None:
        gpaw_settings["kpt_density_per_A"] = args.kpt_density
        variant += f"_k{args.kpt_density:g}"
    if args.nbands is not None:
        gpaw_settings["nbands"] = int(args.nbands) if args.nbands.lstrip("-").isdigit() else args.nbands
        variant += f"_nbands{args.nbands}"
    if args.no_dedecut:
        gpaw_settings.pop("dedecut", None)
        variant += "_nodedecut"
    workdir = args.workdir / variant
    if world.rank == 0:
        workdir.mkdir(parents=True, exist_ok=True)
    world.barrier()

    factors = tuple(float(f) for f in args.factors.split(",")) if args.factors else VOLUME_FACTORS
    points = energy_volume_points(args.element, gpaw_settings, workdir, factors)
    volumes = [p["volume_per_atom_A3"] for p in points]
    energies = [p["energy_per_atom_eV"] for p in points]
    v_fit, e_fit, b_fit = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
    v0 = wien2k_v0(args.element)
    v_p0 = pressure_zero_volume(volumes, [p["pressure_GPa"] for p in points])
    record = {
        "element": args.element, "variant": variant, "gpaw": gpaw_settings,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "mpi_ranks": world.size,
        "wien2k_V0_A3_per_atom": v0, "points": points,
        "energy_fit_V0_A3_per_atom": float(v_fit), "energy_fit_B_GPa": float(b_fit / GPa),
        "energy_fit_diff_percent": 100 * (float(v_fit) / v0 - 1),
        "pressure_zero_V_A3_per_atom": v_p0,
        "pressure_zero_diff_percent": None if v_p0 is None else 100 * (v_p0 / v0 - 1),
    }
    parprint(f"{args.element} [{variant}]: E(V) fit V0 {v_fit:.2f} Å³/atom "
             f"({record['energy_fit_diff_percent']:+.2f} %), B {record['energy_fit_B_GPa']:.1f} GPa; P = 0 at "
             + ("-" if v_p0 is None else f"{v_p0:.2f} ({record['pressure_zero_diff_percent']:+.2f} %)")
             + f"; WIEN2k V0 {v0:.2f}", flush=True)
    if world.rank == 0:
        atomic_write_json(RESULTS / variant / f"{args.element}.json", record)
    world.barrier()
    return 0


if __name__ == "__main__":
    sys.exit(main())
