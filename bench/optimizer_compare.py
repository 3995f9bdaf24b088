"""Ionic steps and wall time per optimizer of the relaxation driver (issue 32, item 3; not run in CI).

A tiny comparison, not the issue's study: for a few 1-2 atom cells strained away from their
minima (diamond Si with one atom moved, rocksalt NaCl, fcc Al), in this one process on one
core, :func:`dftscreen.relax.relax_atoms` at the ``test`` preset with ``--fmax`` (tighter than
the preset's 0.1 eV/Å, so there are steps to count) and each of ``--optimizers``. Prints per
cell and optimizer: status, ionic steps, calculator calls (``calculate``: an SCF for a new
geometry, a cheap call for forces or stress of a converged one; PreconLBFGS's line search
adds geometries), wall time, final energy per atom and volume, and their
differences from BFGS's (the issue's "same minimum": 1 meV/atom, 0.3 %). BFGS-MLHessian's wall
time includes loading SevenNet-0 and its finite-difference Hessian; the line ends with the
record's ``initial_hessian`` (which Hessian it started from).

Usage:
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 .venv/bin/python bench/optimizer_compare.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any


def cells() -> list[tuple[str, Any]]:
    from ase.build import bulk

    si = bulk("Si", "diamond", a=5.60)
    si.positions[1] += [0.05, -0.03, 0.02]
    return [("Si", si), ("NaCl", bulk("NaCl", "rocksalt", a=5.85)), ("Al", bulk("Al", "fcc", a=4.15))]


def main() -> None:
    from dftscreen import relax
    from dftscreen.dft import attach_gpaw, one_blas_thread_per_rank
    from dftscreen.settings import resolve_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fmax", type=float, default=0.02)
    parser.add_argument("--optimizers", nargs="+", default=["BFGS", "FIRE", "PreconLBFGS", "BFGS-MLHessian"])
    parser.add_argument("--max-steps", type=int, default=60)
    args = parser.parse_args()
    one_blas_thread_per_rank()
    warnings.simplefilter("ignore")
    print(f"# load average {os.getloadavg()[0]:.2f}; test preset, fmax {args.fmax} eV/Å")
    print("cell  optimizer    status          steps  calls  wall s  E/atom eV    V Å³     ΔE meV/atom  ΔV %")
    root = Path(tempfile.mkdtemp(prefix="optimizer_compare_"))
    try:
        for name, atoms in cells():
            reference = None
            for optimizer in args.optimizers:
                settings = resolve_settings("test", {"relax": {"optimizer": optimizer, "fmax_eV_per_A": args.fmax,
                                                               "max_steps": args.max_steps}})
                evaluations = []

                def counting(atoms_, gpaw_settings, txt, evaluations=evaluations):
                    calc = attach_gpaw(atoms_, gpaw_settings, txt)
                    inner = calc.calculate

                    def calculate(*a, **k):
                        evaluations.append(1)
                        return inner(*a, **k)

                    calc.calculate = calculate
                    return calc

                start = time.perf_counter()
                try:
                    _, record = relax.relax_atoms(atoms.copy(), settings, root / f"{name}_{optimizer}", counting)
                    status = "converged" if record["converged"] else "step limit"
                except Exception as exc:  # noqa: BLE001 - a benchmark line, not a crash
                    print(f"{name:5s} {optimizer:12s} failed: {exc}", flush=True)
                    continue
                wall = time.perf_counter() - start
                energy = record["energy_per_atom_eV"]
                volume = record["final_volume_A3"]
                if reference is None:
                    reference = (energy, volume)
                print(f"{name:5s} {optimizer:12s} {status:15s} {record['n_ionic_steps']:5d} {len(evaluations):6d}"
                      f" {wall:7.1f}  {energy:.5f}  {volume:7.3f}  {(energy - reference[0]) * 1000:+9.3f}"
                      f"  {(volume / reference[1] - 1) * 100:+6.2f}  {record.get('initial_hessian') or ''}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
