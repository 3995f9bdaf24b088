"""Formation energies of a sulfide and a manganese compound, ML and DFT (issue 29; not run in CI).

Before issue 29, S and Mn had no elemental reference (the automatic ones cannot build α-S or
α-Mn), so no sulfide or Mn compound got a formation energy. Their references are now the
published ground states (:data:`dftscreen.references.PUBLISHED_CRYSTALS`: α-S, 32 atoms;
α-Mn, 29 atoms, collinear ferrimagnetic start). This bench computes, for zincblende ZnS
(a = 5.41 Å) and rocksalt MnO (a = 4.445 Å, ferromagnetic start in its 2-atom cell):

- ML: SevenNet-0 through the ML stage's own functions (:func:`dftscreen.ml.run_batch`,
  :func:`dftscreen.ml.relax_references`, :func:`dftscreen.ml_hull.screen`), default ML settings;
- DFT: each compound and each elemental reference relaxed through the workflow's entry points
  (``rule relax``: ``python -m dftscreen.relax``; ``rule element_reference``:
  ``python -m dftscreen.references --element El``) under ``mpiexec -n --ranks`` at ``--preset``,
  then :func:`dftscreen.stability.formation_energy_per_atom`, as the workflow computes it.

Measured formation enthalpies (298 K; NBS tables, D. D. Wagman et al., J. Phys. Chem. Ref.
Data 11, Suppl. 2 (1982)): ZnS (sphalerite) -206.0 kJ/mol, MnO -385.2 kJ/mol. Plain PBE
underbinds sulfides and oxides through the S and O references; the Materials Project's fitted
anion corrections (pymatgen's MP2020Compatibility.yaml: -0.503 eV per sulfide S, -0.687 eV per
oxide O) say by how much, so "PBE expected" below is the measured value less that correction
(MnO without +U: PBE's Mn d error comes on top, so expect a larger deviation there).

Each finished DFT job's record is kept in ``--workdir/<name>/record.json`` (GPAW checkpoints
beside it: a job killed by ``--job-timeout-s`` resumes at the next run) and its essentials in
``bench/records/formation_new_references_<preset>.json`` (written atomically after each job).

Usage:
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PYTHONPATH=src \\
        .venv/bin/python bench/formation_new_references.py --workdir /work/bench_runs/formation29 \\
        [--preset test] [--only ZnS MnO] [--dft-for ZnS] [--job-timeout-s 3600]
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
EV_PER_KJ_PER_MOL = 1.0 / 96.485
#: name -> (ASE bulk crystal structure, lattice constant Å, measured ΔfH° kJ/mol, MP2020 anion correction eV per anion).
COMPOUNDS: dict[str, tuple[str, float, float, float]] = {
    "ZnS": ("zincblende", 5.41, -206.0, -0.503),
    "MnO": ("rocksalt", 4.445, -385.2, -0.687),
}
#: What a DFT record keeps in the bench's records file.
KEPT = ("status", "reason", "formula", "n_atoms", "energy_eV", "energy_per_atom_eV", "converged", "n_ionic_steps",
        "max_force_eV_per_A", "max_stress_GPa", "magnetic_moment_muB", "final_volume_A3", "core_seconds_all_starts",
        "n_starts", "initial_volume_A3", "reference_description", "reference_note", "reference_start", "gpaw_version")


def elements_of(names: list[str]) -> list[str]:
    from pymatgen.core import Composition

    return sorted({el.symbol for name in names for el in Composition(name).elements})


def write_cif(name: str, folder: Path) -> Path:
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.cif import CifWriter

    kind, a, _, _ = COMPOUNDS[name]
    path = folder / f"{name}.cif"
    CifWriter(AseAtomsAdaptor.get_structure(bulk(name, kind, a=a))).write_file(path)
    return path


def dft_job(name: str, module_args: list[str], settings: dict[str, Any], ranks: int, workdir: Path,
            timeout_s: float) -> dict[str, Any]:
    """One GPAW job through a workflow entry point; its record (``status: killed`` when timed out)."""
    folder = workdir / name
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "record.json"
    if out.is_file():
        record = json.loads(out.read_text())
        if record.get("status") in ("relaxed", "not_converged", "failed"):
            return record
    command = ["mpiexec", "--bind-to", "none", "-n", str(ranks), sys.executable, "-m", "gpaw", "python",
               *module_args, "--settings", json.dumps(settings), "--out-json", str(out),
               "--out-cif", str(folder / "relaxed.cif"), "--workdir", str(folder)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    with open(folder / "log.txt", "a") as log:
        try:
            subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"status": "killed", "reason": f"stopped after {timeout_s:.0f} s; rerun resumes from the checkpoint"}
    if not out.is_file():
        elapsed = time.monotonic() - start
        return {"status": "failed", "reason": f"no record after {elapsed:.0f} s (see {folder}/log.txt)"}
    return json.loads(out.read_text())


def dft_formation(records: dict[str, dict[str, Any]], names: list[str]) -> dict[str, float | None]:
    """Formation energy (eV/atom) of each compound whose relaxation and elemental references finished."""
    from pymatgen.core import Composition

    from dftscreen.stability import EnergyRecord, chemical_potentials, formation_energy_per_atom

    def energy(key: str) -> EnergyRecord | None:
        record = records.get(key) or {}
        if record.get("status") != "relaxed":
            return None
        return EnergyRecord(key, Composition(record["formula"]), float(record["energy_eV"]))

    mu = chemical_potentials(r for r in (energy(f"element_{el}") for el in elements_of(names)) if r is not None)
    found: dict[str, float | None] = {}
    for name in names:
        compound = energy(name)
        try:
            found[name] = None if compound is None else formation_energy_per_atom(compound, mu)
        except KeyError:
            found[name] = None
    return found


def ml_formation(names: list[str], cifs: dict[str, Path]) -> dict[str, Any]:
    """ML formation energies (eV/atom) and the ML references' descriptions, with the ML stage's functions."""
    from dftscreen import columns, ml, ml_hull
    from dftscreen.config import with_defaults
    from dftscreen.layout import ResultsLayout

    settings = ml.MLSettings.from_config(with_defaults({})["ml"])
    with tempfile.TemporaryDirectory() as tmp:
        layout = ResultsLayout.of(Path(tmp))
        calculator = ml.load_calculator(settings.model, threads=1)
        ml.run_batch([(name, str(cifs[name])) for name in names], layout, settings, lambda: calculator)
        references = ml.relax_references(elements_of(names), {}, {}, layout, settings, lambda: calculator)
        verdicts = ml_hull.screen(names, ml_hull.read_records(layout, names), references, None)["structures"]
    return {
        "formation_eV_per_atom": {name: verdicts[name].get(columns.ML_FORMATION_COLUMN) for name in names},
        "references": {r["element"]: r.get("reference_description", "") for r in references["elements"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="test")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--only", nargs="*", default=list(COMPOUNDS))
    parser.add_argument("--job-timeout-s", type=float, default=4 * 3600.0)
    parser.add_argument("--dft-for", nargs="*", default=None,
                        help="compounds whose DFT (and elements') runs now (default: all of --only); the rest ML only")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from dftscreen.io import atomic_write_json
    from dftscreen.settings import resolve_settings

    settings = resolve_settings(args.preset)
    records_path = REPO / "bench" / "records" / f"formation_new_references_{args.preset}.json"
    saved = json.loads(records_path.read_text()) if records_path.is_file() else {}
    results: dict[str, Any] = {"preset": args.preset, "ranks": args.ranks, "dft": dict(saved.get("dft", {}))}
    args.workdir.mkdir(parents=True, exist_ok=True)
    cifs = {name: write_cif(name, args.workdir) for name in args.only}
    results["ml"] = ml_formation(args.only, cifs)
    dft_for = args.only if args.dft_for is None else args.dft_for
    jobs = [(f"element_{el}", ["-m", "dftscreen.references", "--element", el, "--structure-id", f"element_{el}"])
            for el in elements_of(dft_for)]
    jobs += [(name, ["-m", "dftscreen.relax", "--structure-id", name, "--cif", str(cifs[name])]) for name in dft_for]
    results["dft_formation_eV_per_atom"] = dft_formation(results["dft"], list(COMPOUNDS))
    atomic_write_json(records_path, results)
    for key, module_args in jobs:
        record = dft_job(key, module_args, settings, args.ranks, args.workdir, args.job_timeout_s)
        results["dft"][key] = {k: record[k] for k in KEPT if k in record}
        results["dft_formation_eV_per_atom"] = dft_formation(results["dft"], list(COMPOUNDS))
        atomic_write_json(records_path, results)
        print(f"{key:<12} {record.get('status'):<13} {record.get('energy_per_atom_eV', float('nan')):9.4f} eV/atom  "
              f"{record.get('core_seconds_all_starts', 0.0) / 3600:.2f} core-h", flush=True)
    print(f"\n{'':<5} {'ML':>7} {'DFT':>7} {'measured':>9} {'PBE expected':>13}   (eV/atom, {args.preset})")
    for name in COMPOUNDS:
        _, _, measured_kj, correction = COMPOUNDS[name]
        measured = measured_kj * EV_PER_KJ_PER_MOL / 2
        ml_value = results["ml"]["formation_eV_per_atom"].get(name)
        dft_value = results["dft_formation_eV_per_atom"].get(name)
        text = [f"{v:7.3f}" if v is not None else f"{'-':>7}" for v in (ml_value, dft_value)]
        print(f"{name:<5} {text[0]} {text[1]} {measured:9.3f} {measured - correction / 2:13.3f}")


if __name__ == "__main__":
    main()
