"""Validate the DFT settings against published PBE values and experiment (not run in CI).

Relaxes Si, GaAs, NaCl, MgO, Cu and Fe with a preset (default ``standard``)
through the same entry points the workflow uses (``dftscreen.relax`` and
``dftscreen.properties`` under ``mpiexec -n RANKS gpaw python``), starting from
the experimental lattice constant, and prints the relaxed cubic lattice
constant, band gap and magnetic moment beside reference values.

References (conventional cubic lattice constant a in Å, band gap in eV):

- PBE lattice constants: P. Haas, F. Tran, P. Blaha, Phys. Rev. B 79, 085104
  (2009), Table (PBE column), all-electron WIEN2k.
- PBE band gaps: J. Heyd, J. E. Peralta, G. E. Scuseria, R. L. Martin,
  J. Chem. Phys. 123, 174101 (2005), Table (PBE column; computed at the
  experimental lattice constant).
- Experiment: lattice constants and gaps as collected in the same two papers
  (room-temperature a; low-temperature gaps); Fe moment 2.22 µB.

Usage: python bench/validate_dft.py [--preset standard] [--ranks 2] [--only Si,Fe]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ase.build import bulk
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.cif import CifWriter

from dftscreen.settings import resolve_settings

# name: (ase.build.bulk args, experimental a (Å), PBE a (Å), PBE gap (eV), experimental gap (eV))
SYSTEMS: dict[str, tuple[dict, float, float | None, float | None, float | None]] = {
    "Si": ({"name": "Si", "crystalstructure": "diamond"}, 5.430, 5.466, 0.75, 1.17),
    "GaAs": ({"name": "GaAs", "crystalstructure": "zincblende"}, 5.648, 5.752, 0.56, 1.52),
    "NaCl": ({"name": "NaCl", "crystalstructure": "rocksalt"}, 5.595, 5.697, 5.08, 8.5),
    "MgO": ({"name": "MgO", "crystalstructure": "rocksalt"}, 4.207, 4.259, 4.77, 7.22),
    "Cu": ({"name": "Cu", "crystalstructure": "fcc"}, 3.603, 3.632, 0.0, 0.0),
    "Fe": ({"name": "Fe", "crystalstructure": "bcc"}, 2.867, 2.833, 0.0, 0.0),
}


def cubic_lattice_constant(structure: Structure, crystalstructure: str) -> float:
    """Conventional cubic a (Å) from the primitive cell's volume."""
    # Primitive cells: fcc-based lattices hold 1/4, bcc 1/2 of the conventional cell.
    fraction = 0.5 if crystalstructure == "bcc" else 0.25
    return (structure.volume / fraction) ** (1 / 3)


def run_module(module: str, args: list[str], ranks: int) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    command = ["mpiexec", "-n", str(ranks), sys.executable, "-m", "gpaw", "python", "-m", module, *args]
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated subset of " + ",".join(SYSTEMS))
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    settings = json.dumps(resolve_settings(args.preset))
    names = [n for n in SYSTEMS if not args.only or n in args.only.split(",")]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="validate_dft_"))

    print(f"preset {args.preset}, {args.ranks} MPI ranks, work in {workdir}")
    header = (
        f"{'':5} {'a ours':>8} {'a PBE':>7} {'a exp':>7} {'Δa/a PBE %':>10} {'gap ours':>8} {'gap PBE':>7}"
        f" {'gap exp':>7} {'moment µB':>9} {'steps':>5} {'time s':>7}"
    )
    print(header)
    for name in names:
        build, a_exp, a_pbe, gap_pbe, gap_exp = SYSTEMS[name]
        folder = workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        cif = folder / f"{name}.cif"
        CifWriter(AseAtomsAdaptor.get_structure(bulk(a=a_exp, **build))).write_file(cif)
        start = time.perf_counter()
        run_module(
            "dftscreen.relax",
            [
                "--structure-id",
                name,
                "--cif",
                str(cif),
                "--settings",
                settings,
                "--out-json",
                str(folder / "relax.json"),
                "--out-cif",
                str(folder / "relaxed.cif"),
                "--workdir",
                str(folder),
            ],
            args.ranks,
        )
        run_module(
            "dftscreen.properties",
            [
                "--structure-id",
                name,
                "--relax-json",
                str(folder / "relax.json"),
                "--settings",
                settings,
                "--out-json",
                str(folder / "properties.json"),
                "--workdir",
                str(folder),
            ],
            args.ranks,
        )
        elapsed = time.perf_counter() - start
        relax = json.loads((folder / "relax.json").read_text())
        props = json.loads((folder / "properties.json").read_text())
        if relax["status"] == "failed" or props["status"] != "done":
            print(f"{name:5} failed: {relax.get('reason') or props.get('reason')}")
            continue
        a = cubic_lattice_constant(Structure.from_file(folder / "relaxed.cif"), build["crystalstructure"])
        print(
            f"{name:5} {a:8.3f} {a_pbe:7.3f} {a_exp:7.3f} {100 * (a - a_pbe) / a_pbe:10.2f} "
            f"{props['band_gap_eV']:8.2f} {gap_pbe:7.2f} {gap_exp:7.2f} {props['magnetic_moment_muB']:9.2f} "
            f"{relax['n_ionic_steps']:5d} {elapsed:7.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
