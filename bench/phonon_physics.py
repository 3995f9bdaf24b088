"""Dynamical stability of five textbook crystals, ML and DFT side by side (issue 31; not run in CI).

Si (diamond), NaCl and MgO (rocksalt): every mode real. Cubic SrTiO3: the antiferrodistortive
(octahedral tilt) instability at R. Cubic BaTiO3: the ferroelectric instability at Γ. Each at
its PBE lattice constant (Si 5.47 Å, NaCl 5.70 Å, MgO 4.26 Å, SrTiO3 3.94 Å, BaTiO3 4.03 Å:
the Materials Project's PBE values, rounded), in its primitive cell, atoms on their
symmetry-fixed sites (no forces, nothing to relax).

- ML: SevenNet-0 through :func:`dftscreen.phonons.ml_phonons` (its own tight relaxation first,
  then the default 10 Å supercell), as the ML phonon stage runs it;
- DFT: ``python -m dftscreen.phonons`` under ``mpiexec -n --ranks`` with GPAW at ``--preset``
  and supercells of at least ``--supercell-length-A``, or with ``--repeats n`` an n x n x n
  supercell of each primitive cell (2 makes R commensurate for the perovskites), on the same
  structure (not relaxed at the preset: the comparison is at the PBE lattice constant, as the
  issue asks).

Prints one line per crystal (lowest frequency, where, stable or not, cost) and one with the
lowest frequency at each special point of the band path (Γ, X, M, R), and writes the
records to ``bench/records/phonon_physics_<preset>.json``.

Usage:
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \\
        .venv/bin/python bench/phonon_physics.py --preset test --supercell-length-A 7
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

#: name -> (space group, lattice constant Å, species, fractional sites of the conventional cell, expected).
CRYSTALS: dict[str, tuple[str, float, list[str], list[list[float]], str]] = {
    "Si": ("Fd-3m", 5.47, ["Si"], [[0, 0, 0]], "all real"),
    "NaCl": ("Fm-3m", 5.70, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]], "all real"),
    "MgO": ("Fm-3m", 4.26, ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]], "all real"),
    "SrTiO3": ("Pm-3m", 3.94, ["Sr", "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]], "imaginary at R"),
    "BaTiO3": ("Pm-3m", 4.03, ["Ba", "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]], "imaginary at Γ"),
}


def write_cif(name: str, folder: Path) -> Path:
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter

    group, a, species, sites, _ = CRYSTALS[name]
    structure = Structure.from_spacegroup(group, Lattice.cubic(a), species, sites).get_primitive_structure()
    path = folder / f"{name}.cif"
    CifWriter(structure).write_file(path)
    return path


def ml_record(cif: Path, calculator: Any) -> dict[str, Any]:
    from dftscreen.cif_reader import read_structure
    from dftscreen.config import with_defaults
    from dftscreen.dft import structure_to_atoms
    from dftscreen.ml import MLSettings
    from dftscreen.phonons import PhononSettings, ml_phonons

    config = with_defaults({})
    structure, _ = read_structure(cif)
    start = time.perf_counter()
    record = ml_phonons(structure_to_atoms(structure), calculator, MLSettings.from_config(config["ml"]),
                        PhononSettings.from_config(config["phonons"]))
    record["bench_wall_time_s"] = time.perf_counter() - start
    return record


def repeats_length(cif: Path, repeats: int) -> float:
    """The supercell length (Å) that makes :func:`dftscreen.phonons.supercell_matrix` repeat the cell
    ``repeats`` times."""
    import numpy as np

    from dftscreen.cif_reader import read_structure

    cell = read_structure(cif)[0].lattice.matrix
    widths = abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(np.roll(cell, -1, 0), np.roll(cell, -2, 0)), axis=1)
    return float(repeats * widths.max() - 1e-3)


def dft_record(cif: Path, preset: str, length: float, ranks: int, workdir: Path) -> dict[str, Any]:
    from dftscreen.config import with_defaults
    from dftscreen.settings import resolve_settings

    settings = {**with_defaults({})["phonons"], "min_supercell_length_A": length}
    settings = {k: v for k, v in settings.items() if k not in ("ml", "dft", "dft_by_preset")}
    relax = workdir / "relax.json"
    relax.write_text(json.dumps({"status": "relaxed", "max_force_eV_per_A": 0.0}))
    out = workdir / "phonons.json"
    command = ["mpiexec", "-n", str(ranks), sys.executable, "-m", "gpaw", "python", "-m", "dftscreen.phonons",
               "--structure-id", cif.stem, "--relaxed-cif", str(cif), "--relax-json", str(relax),
               "--settings", json.dumps(resolve_settings(preset)), "--phonon-settings", json.dumps(settings),
               "--workdir", str(workdir), "--out-json", str(out)]
    proc = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    if not out.is_file():
        return {"status": "failed", "reason": proc.stderr[-2000:]}
    return json.loads(out.read_text())


def summary(record: dict[str, Any]) -> str:
    if record.get("status") != "computed":
        return f"{record.get('status')}: {str(record.get('reason'))[:60]}"
    where = record.get("min_frequency_qpoint_label") or record.get("min_frequency_qpoint")
    verdict = "stable" if record["dynamically_stable"] else f"{record['n_imaginary_modes']} imaginary"
    return f"{record['min_frequency_THz']:7.2f} THz at {where:<3} {verdict}"


def special_points(record: dict[str, Any]) -> str:
    """The lowest frequency at each special point (THz), e.g. ``Γ -6.75  M 3.10  R -1.20  X 2.00``."""
    minima = record.get("special_point_min_frequencies_THz") or {}
    return "  ".join(f"{label} {value:.2f}" for label, value in sorted(minima.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="test")
    parser.add_argument("--supercell-length-A", type=float, default=7.0)
    parser.add_argument("--repeats", type=int, default=None, help="an n x n x n supercell instead of a length")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--tag", default="", help="suffix of the records file")
    parser.add_argument("--only", nargs="*", default=list(CRYSTALS))
    parser.add_argument("--ml-only", action="store_true", help="ML phonons only (seconds); no GPAW, no records file")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the GPAW work folders here (default: a temporary folder); a rerun with the "
                             "same folder reuses every displacement whose forces it finished")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from dftscreen.ml import load_calculator

    calculator = load_calculator("7net-0", threads=1)
    results: dict[str, Any] = {}
    records_path = REPO / "bench" / "records" / f"phonon_physics_{args.preset}{args.tag}.json"
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            folder = (args.workdir or Path(tmp)) / name
            folder.mkdir(parents=True, exist_ok=True)
            cif = write_cif(name, folder)
            ml = ml_record(cif, calculator)
            if args.ml_only:
                print(f"{name:<7} expected {CRYSTALS[name][4]:<15} ML {summary(ml):<38} "
                      f"({ml.get('phonon_wall_time_s', float('nan')):.1f} s)  {special_points(ml)}", flush=True)
                continue
            length = repeats_length(cif, args.repeats) if args.repeats else args.supercell_length_A
            dft = dft_record(cif, args.preset, length, args.ranks, folder)
            for record in (ml, dft):  # the curves stay in the records of a run, not in the bench's
                record.pop("band_structure", None)
                record.pop("dos", None)
            results[name] = {"expected": CRYSTALS[name][4], "ml": ml, "dft": dft}
            print(f"{name:<7} expected {CRYSTALS[name][4]:<15} ML {summary(ml):<38} "
                  f"({ml.get('phonon_wall_time_s', float('nan')):.1f} s)  DFT {summary(dft):<38} "
                  f"({dft.get('core_hours', float('nan')):.3f} core-h, supercell "
                  f"{'x'.join(str(row[i]) for i, row in enumerate(dft.get('supercell_matrix', [[0] * 3] * 3)))})",
                  flush=True)
            print(f"{'':<7} lowest at the special points (THz): ML {special_points(ml)}  DFT {special_points(dft)}",
                  flush=True)
            records_path.write_text(json.dumps({"preset": args.preset, "supercell_length_A": args.supercell_length_A,
                                                "repeats": args.repeats, "ranks": args.ranks, "crystals": results},
                                               indent=1))


if __name__ == "__main__":
    main()
