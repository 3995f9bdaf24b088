"""What ML phonons cost beside the ML relaxation, per 5-atom perovskite (issue 31; not run in CI).

For cubic BaTiO3 and SrTiO3 (5 atoms, built here: 3 symmetry-distinct displacements) and
the first ``--n`` perov_5 perovskites in ``../shared/data/reference/perov5_sample50`` (sorted
by file name; mixed-anion, lower symmetry: 10 displacements), with SevenNet-0 loaded once on
``--threads`` torch threads:

1. the ML stage's relaxation (:func:`dftscreen.ml.relax_atoms`, the default ML settings:
   cell and positions, FixSymmetry, FIRE to 0.05 eV/Å) from the CIF;
2. ML phonons of the result (:func:`dftscreen.phonons.ml_phonons`, default phonon settings):
   the tight relaxation (0.001 eV/Å) and the displaced supercells, timed apart.

Prints one line per structure, then medians. Times are wall seconds on this machine, with
whatever else it runs (the load average is printed; a loaded 2-core machine doubles them).

Usage:
    .venv/bin/python bench/phonon_cost.py --n 10
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PEROVSKITES = REPO.parent / "shared" / "data" / "reference" / "perov5_sample50"


def cubic_perovskites() -> list[tuple[str, Any]]:
    """Cubic BaTiO3 (a = 4.00 Å) and SrTiO3 (3.90 Å), 5 atoms each."""
    from ase import Atoms

    positions = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return [(f"{a_site}TiO3-cubic", Atoms([a_site, "Ti", "O", "O", "O"], cell=[a] * 3, pbc=True,
                                        scaled_positions=positions))
            for a_site, a in (("Ba", 4.00), ("Sr", 3.90))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10, help="how many perovskites (sorted by file name)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the ML stage's default: 1 per job)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    from dftscreen.cif_reader import read_structure
    from dftscreen.dft import structure_to_atoms
    from dftscreen.ml import MLSettings, load_calculator, relax_atoms
    from dftscreen.phonons import PhononSettings, ml_phonons

    formulas = {row["file"]: row["formula"] for row in csv.DictReader(open(PEROVSKITES / "properties.csv"))}
    files = sorted(PEROVSKITES.glob("*.cif"))[: args.n]
    start = time.perf_counter()
    calculator = load_calculator("7net-0", threads=args.threads)
    print(f"model loaded in {time.perf_counter() - start:.1f} s; load average {os.getloadavg()[0]:.1f}")
    ml_settings, settings = MLSettings(), PhononSettings()
    rows = []
    header = (f"{'file':<18} {'formula':<10} {'relax_s':>7} {'tight_s':>7} {'phonon_s':>8} "
              f"{'disp':>4} {'atoms':>5} {'min_THz':>8} {'at':>3} stable")
    print(header)
    cases = [(name, atoms) for name, atoms in cubic_perovskites()]
    cases += [(path.name, structure_to_atoms(read_structure(path)[0])) for path in files]
    for name, atoms in cases:
        relaxed, relax = relax_atoms(atoms, calculator, ml_settings)
        record = ml_phonons(relaxed, calculator, ml_settings, settings)
        row = {"relax_s": relax["wall_time_s"], "tight_s": record.get("relax_wall_time_s", float("nan")),
               "phonon_s": record.get("phonon_wall_time_s", float("nan"))}
        rows.append(row)
        if record["status"] != "computed":
            print(f"{name:<18} {formulas.get(name, name):<10} {row['relax_s']:7.1f} "
                  f"{record['status']}: {record['reason']}")
            continue
        print(f"{name:<18} {formulas.get(name, name):<10} {row['relax_s']:7.1f} {row['tight_s']:7.1f} "
              f"{row['phonon_s']:8.1f} {record['n_displacements']:>4} {record['n_supercell_atoms']:>5} "
              f"{record['min_frequency_THz']:8.2f} {record['min_frequency_qpoint_label'] or '-':>3} "
              f"{record['dynamically_stable']}")
    for key in ("relax_s", "tight_s", "phonon_s"):
        values = [row[key] for row in rows if row[key] == row[key]]
        if values:
            print(f"median {key}: {statistics.median(values):.1f} s (min {min(values):.1f}, max {max(values):.1f})")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
