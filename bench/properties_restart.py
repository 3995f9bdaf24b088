"""Single points from the relaxation's GPAW state against fresh starts (issue 32, item 2; not run in CI).

For a few 1-2 atom cells (strained diamond Si, rocksalt NaCl, fcc Al: an insulator, an ionic
insulator, a metal), in this one process on one core:

1. the relaxation as a structure's job runs it (:func:`dftscreen.relax.run`, test preset,
   ``keep_gpaw_state``: it writes ``relaxed.gpw``);
2. the single point (:func:`dftscreen.properties.run`) fresh and from ``relaxed.gpw``,
   alternately, ``--repeats`` times each, on the relaxation's k-mesh (the ``test`` preset's)
   and on a denser one (``--denser``, as the ``fast`` and ``standard`` presets use), where
   the restart keeps only the density (``dftscreen.properties.REUSE_DENSITY_ALONE``
   switched on here; the workflow starts afresh there, since this measured no gain).
   ``--convergence standard`` uses the standard preset's SCF criteria.

Prints one line per cell and mesh: SCF iterations, SCF wall time and the whole single point's
(band path included), fresh and restarted (medians), their ratio and the largest energy
difference. Times are wall seconds on this machine with whatever else it runs.

Usage:
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 .venv/bin/python bench/properties_restart.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any


def cells() -> list[tuple[str, Any]]:
    """Strained Si (2 atoms), NaCl (2) and Al (1), a few ionic steps from their minima."""
    from ase.build import bulk

    si = bulk("Si", "diamond", a=5.55)
    si.positions[1] += [0.03, -0.02, 0.0]
    return [("Si", si), ("NaCl", bulk("NaCl", "rocksalt", a=5.80)), ("Al", bulk("Al", "fcc", a=4.10))]


def relaxed_folder(root: Path, name: str, atoms: Any, settings: dict[str, Any]) -> Path:
    from dftscreen import relax

    folder = root / "dft" / name
    folder.mkdir(parents=True)
    start = time.perf_counter()
    record = relax.run(None, name, settings, folder / "relax.json", folder / "relaxed.cif", folder,
                       load_atoms=lambda: atoms.copy(), keep_gpaw_state=True)
    print(f"# {name}: relaxed ({record['status']}, {record['n_ionic_steps']} steps) in "
          f"{time.perf_counter() - start:.1f} s; relaxed.gpw {(folder / 'relaxed.gpw').stat().st_size / 1e6:.2f} MB",
          flush=True)
    fresh = dict(record)
    fresh.pop("restart")
    (folder / "relax_fresh.json").write_text(json.dumps(fresh))
    return folder


def single_point(folder: Path, relax_json: str, settings: dict[str, Any]) -> dict[str, Any]:
    from dftscreen import properties

    start = time.perf_counter()
    record = properties.run(folder / relax_json, folder.name, settings, folder / "p.json", folder)
    record["total_s"] = time.perf_counter() - start
    assert record["status"] == "done", record
    return record


def summary_line(name: str, density: float, runs: dict[str, list[dict[str, Any]]]) -> str:
    """One printed line: iterations, SCF and whole single-point seconds (medians), ratios, differences."""

    def median(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[kind])

    de = max(abs(r["energy_per_atom_eV"] - f["energy_per_atom_eV"])
             for r in runs["restart"] for f in runs["fresh"]) * 1000
    dgap = max(abs(r["band_gap_eV"] - f["band_gap_eV"]) for r in runs["restart"] for f in runs["fresh"])
    started = runs["restart"][0]["restarted_from"] or runs["restart"][0]["restart_note"]
    return (f"{name:5s} {density:4.1f}  {started:27s}"
            f"  {median('fresh', 'scf_iterations'):.0f}/{median('restart', 'scf_iterations'):.0f}"
            f"  {median('fresh', 'scf_wall_time_s'):.2f}/{median('restart', 'scf_wall_time_s'):.2f}"
            f" ({median('restart', 'scf_wall_time_s') / median('fresh', 'scf_wall_time_s'):.2f})"
            f"  {median('fresh', 'total_s'):.2f}/{median('restart', 'total_s'):.2f}"
            f" ({median('restart', 'total_s') / median('fresh', 'total_s'):.2f})"
            f"  {de:.3f}  {dgap * 1000:.1f}")


def main() -> None:
    from dftscreen import properties
    from dftscreen.dft import one_blas_thread_per_rank
    from dftscreen.settings import PRESETS, resolve_settings

    properties.REUSE_DENSITY_ALONE = True  # to measure what the density alone saves on another k-mesh

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--denser", type=float, default=3.0, help="k-point density of the denser mesh (per Å⁻¹)")
    parser.add_argument("--convergence", choices=("test", "standard"), default="test")
    args = parser.parse_args()
    one_blas_thread_per_rank()
    warnings.simplefilter("ignore")
    settings = resolve_settings("test")
    settings["gpaw"]["convergence"] = dict(PRESETS[args.convergence]["gpaw"]["convergence"])
    settings["properties"]["keep_restart_file"] = True
    print(f"# load average {os.getloadavg()[0]:.2f}; convergence {settings['gpaw']['convergence']}")
    print("cell  mesh(k/Å⁻¹)  restarted_from  iterations fresh/restart  SCF s fresh/restart  "
          "single point s fresh/restart (ratio)  |ΔE| meV/atom  |Δgap| meV")
    root = Path(tempfile.mkdtemp(prefix="properties_restart_"))
    try:
        for name, atoms in cells():
            folder = relaxed_folder(root, name, atoms, settings)
            for density in (settings["gpaw"]["kpt_density_per_A"], args.denser):
                mesh = json.loads(json.dumps(settings))
                mesh["properties"]["kpt_density_per_A"] = density
                runs: dict[str, list[dict[str, Any]]] = {"fresh": [], "restart": []}
                for _ in range(args.repeats):
                    runs["fresh"].append(single_point(folder, "relax_fresh.json", mesh))
                    runs["restart"].append(single_point(folder, "relax.json", mesh))

                print(summary_line(name, density, runs), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
