"""`standard` before and after issue 32's settings, side by side on the same perovskites (not run in CI).

Before: 800 eV with GPAW's Pulay-stress estimate, one k-mesh (5.0 per Å⁻¹) for every relaxation.
After (today's ``standard``): 700 eV with the cell's own cutoff derivative, and 3.0 per Å⁻¹ for a
compound whose gap on a coarse mesh at the start is at least 0.5 eV (config/README.md). Everything
else is the preset's (smearing 0.05 eV, fmax 0.02 eV/Å, 0.5 GPa, BFGS; single point on 7.0 per Å⁻¹
with an 80-point band path).

For each perovskite of the bench in bench/README.md, "Formation energies and gaps of CMR perovskites"
(``validate_properties.PEROVSKITES``; ``--only`` picks some by formula), both settings run one after
the other on this machine, through the workflow's own entry points (``python -m dftscreen.relax``, then
``python -m dftscreen.properties``, under ``mpiexec -n 2``), from the same generated CIF. Each run's
record (``bench/records/preset_cost/<variant>/<formula>.json``, atomic; a rerun skips what is stored)
keeps the core-hours of relaxation and single point (wall time x ranks, every start), ionic steps,
energy per atom, volume per atom, band gap and the mesh the relaxation chose.

Formation energies need elemental references at both settings. Relaxing them again is a job per
element and setting; to first order their energy change between two settings is the change at a fixed
geometry (a relaxation moves the energy by a term of second order in the volume change): one SCF per
element and setting at the reference structure the workflow builds (:func:`converge_settings.single_point`;
``bench/records/preset_cost/elements/``), so ΔE_f = Δ(E/atom) of the compound - Σ x_i ΔE_i.

Usage (each structure and element takes the CPU lock for itself, so other work can interleave)::

    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PYTHONPATH=src:bench \\
        .venv/bin/python bench/preset_cost.py [--only TaSbN2O ZrGeN2O] [--stop-at 00:30]
    .venv/bin/python bench/preset_cost.py --report
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO / "bench" / "records" / "preset_cost"
PEROV5 = REPO.parent / "shared" / "data" / "reference" / "perov5_sample50"
LOCK = "/tmp/dftscreen-cpu.lock"
RANKS = 2
#: The two settings compared: overrides of today's ``standard``.
VARIANTS: dict[str, dict[str, Any]] = {
    "before": {"gpaw": {"ecut_eV": 800.0, "dedecut": "estimate", "kpt_density_insulator_per_A": None}},
    "after": {},
}


def variant_settings(variant: str) -> dict[str, Any]:
    """The resolved settings of ``variant`` (today's ``standard`` with its overrides)."""
    from dftscreen.settings import resolve_settings

    return resolve_settings("standard", VARIANTS[variant])


def mpi_command(module: str, args: list[str]) -> list[str]:
    """``python -m module args`` under ``mpiexec -n RANKS gpaw python``, niced, behind the CPU lock."""
    return ["flock", LOCK, "nice", "-n", "5", "mpiexec", "--bind-to", "none", "-n", str(RANKS),
            sys.executable, "-m", "gpaw", "python", "-m", module, *args]


def mpi_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "OMPI_ALLOW_RUN_AS_ROOT": "1",
            "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "PYTHONPATH": f"{REPO / 'src'}:{REPO / 'bench'}"}


def formula_of(cif: Path) -> str:
    from pymatgen.core import Structure

    return Structure.from_file(cif).composition.reduced_formula


def run_structure(cif: Path, variant: str, workdir: Path) -> dict[str, Any]:
    """Relax and single-point ``cif`` with ``variant``'s settings through the workflow's entry points;
    the record of both (core-hours, steps, energies, volume, gap, mesh)."""
    from dftscreen.io import read_json

    settings = json.dumps(variant_settings(variant))
    workdir.mkdir(parents=True, exist_ok=True)
    relax_json, props_json = workdir / "relax.json", workdir / "properties.json"
    start = time.perf_counter()
    for module, args, out in (
        ("dftscreen.relax", ["--structure-id", cif.stem, "--cif", str(cif), "--settings", settings,
                             "--out-json", str(relax_json), "--out-cif", str(workdir / "relaxed.cif"),
                             "--workdir", str(workdir)], relax_json),
        ("dftscreen.properties", ["--structure-id", cif.stem, "--relax-json", str(relax_json), "--settings",
                                  settings, "--out-json", str(props_json), "--workdir", str(workdir)], props_json),
    ):
        if not out.is_file():
            with open(workdir / f"{module}.log", "a") as log:
                subprocess.run(mpi_command(module, args), env=mpi_env(), stdout=log, stderr=log, check=False)
    relax, props = read_json(relax_json), read_json(props_json) if props_json.is_file() else {}
    n_atoms = int(relax.get("n_atoms") or 0)
    return {
        "structure": cif.name, "formula": formula_of(cif), "variant": variant, "overrides": VARIANTS[variant],
        "relax_status": relax.get("status"), "reason": relax.get("reason"),
        "n_atoms": n_atoms, "n_ionic_steps": relax.get("n_ionic_steps"), "converged": relax.get("converged"),
        "relax_core_hours": (relax.get("core_seconds_all_starts") or 0) / 3600,
        "properties_core_hours": (props.get("wall_time_s") or 0) * (props.get("mpi_ranks") or RANKS) / 3600,
        "energy_per_atom_eV": relax.get("energy_per_atom_eV"),
        "volume_per_atom_A3": (relax.get("final_volume_A3") or 0) / n_atoms if n_atoms else None,
        "max_stress_GPa": relax.get("max_stress_GPa"),
        "band_gap_eV": props.get("band_gap_eV"), "properties_status": props.get("status"),
        "relax_kpt_density_per_A": relax.get("relax_kpt_density_per_A"),
        "start_mesh_gap_eV": relax.get("start_mesh_gap_eV"), "kpt_density_note": relax.get("kpt_density_note"),
        "cutoff_derivative_eV_per_eV": relax.get("cutoff_derivative_eV_per_eV"),
        "bench_wall_time_s": time.perf_counter() - start, "mpi_ranks": RANKS,
        "load_average_at_end": os.getloadavg()[0], "gpaw_version": relax.get("gpaw_version"),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def element_scf(symbol: str, variant: str, txt: Path) -> dict[str, Any]:
    """One SCF of ``symbol``'s workflow reference structure at ``variant``'s cutoff, dense mesh and smearing
    (every MPI rank; the energy does not depend on the Pulay correction)."""
    from converge_settings import _element, single_point

    gpaw = variant_settings(variant)["gpaw"]
    record = single_point(_element(symbol), float(gpaw["ecut_eV"]), float(gpaw["kpt_density_per_A"]),
                          float(gpaw["smearing_eV"]), 1.0, txt)
    return {**record, "variant": variant}


def element_main(symbol: str, variant: str, workdir: Path) -> None:
    """MPI entry: compute and store (rank 0) one element's SCF."""
    from ase.parallel import world

    from dftscreen.dft import one_blas_thread_per_rank
    from dftscreen.io import atomic_write_json

    one_blas_thread_per_rank()
    if world.rank == 0:
        workdir.mkdir(parents=True, exist_ok=True)
    world.barrier()
    record = element_scf(symbol, variant, workdir / f"{symbol}_{variant}.txt")
    if world.rank == 0:
        atomic_write_json(RECORDS / "elements" / f"{symbol}_{variant}.json", record)
    world.barrier()


def past(stop_at: str | None) -> bool:
    """Whether the UTC clock is past ``HH:MM`` (after midnight counts as past an evening time)."""
    if not stop_at:
        return False
    now = dt.datetime.now(dt.timezone.utc)
    hour, minute = (int(x) for x in stop_at.split(":"))
    stop = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if stop.hour < 12 <= now.hour:
        stop += dt.timedelta(days=1)
    return now >= stop


def drive(only: list[str] | None, workdir: Path, stop_at: str | None, elements_only: bool = False) -> None:
    """Both variants of each structure (before first), then the elements' SCFs they need (only those
    with ``elements_only``, e.g. from a second process beside a running first)."""
    from pymatgen.core import Composition
    from validate_properties import PEROVSKITES

    from dftscreen.io import atomic_write_json

    cifs = [PEROV5 / name for name in PEROVSKITES]
    cifs = [cif for cif in cifs if not only or formula_of(cif) in only]
    for cif in [] if elements_only else cifs:
        formula = formula_of(cif)
        for variant in VARIANTS:
            path = RECORDS / variant / f"{formula}.json"
            if path.is_file() or past(stop_at):
                continue
            print(f"{dt.datetime.now():%H:%M} {formula} {variant}", flush=True)
            atomic_write_json(path, run_structure(cif, variant, workdir / variant / formula))
    elements = sorted({el.symbol for cif in cifs for el in Composition(formula_of(cif)).elements})
    for symbol in elements:
        for variant in VARIANTS:
            if (RECORDS / "elements" / f"{symbol}_{variant}.json").is_file() or past(stop_at):
                continue
            subprocess.run(mpi_command("preset_cost", ["--element", symbol, "--variant", variant,
                                                       "--workdir", str(workdir / "elements")]),
                           env=mpi_env(), check=False)


# ---- report: from the stored records alone ---------------------------------------------------


def formation_change_meV(
    before: dict[str, Any], after: dict[str, Any], elements: dict[str, dict[str, Any]]
) -> float | None:
    """Change of the formation energy (meV/atom, after - before), or None without every element's two SCFs."""
    from pymatgen.core import Composition

    composition = Composition(before["formula"])
    change = after["energy_per_atom_eV"] - before["energy_per_atom_eV"]
    for element, amount in composition.fractional_composition.items():
        pair = [elements.get(f"{element.symbol}_{variant}") for variant in VARIANTS]
        if None in pair:
            return None
        change -= amount * (pair[1]["energy_per_atom_eV"] - pair[0]["energy_per_atom_eV"])
    return 1000.0 * change


def load(folder: Path) -> dict[str, dict[str, Any]]:
    if not folder.is_dir():
        return {}
    return {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def report_lines(records: Path = RECORDS) -> list[str]:
    """The side-by-side table and the totals over structures with both variants finished."""
    before, after, elements = load(records / "before"), load(records / "after"), load(records / "elements")
    lines = [f"{'formula':9s} {'k after':>7s} {'start gap':>9s} {'steps b/a':>9s} {'core-h before':>13s} "
             f"{'core-h after':>12s} {'ratio':>6s} {'dEf meV/at':>10s} {'dV %':>6s} {'gap b/a eV':>12s}"]
    totals = [0.0, 0.0]
    for formula, b in before.items():
        a = after.get(formula)
        if not a or b["relax_status"] != "relaxed" or a["relax_status"] != "relaxed":
            continue
        cost_b = b["relax_core_hours"] + b["properties_core_hours"]
        cost_a = a["relax_core_hours"] + a["properties_core_hours"]
        totals[0] += cost_b
        totals[1] += cost_a
        d_ef = formation_change_meV(b, a, elements)
        d_v = 100.0 * (a["volume_per_atom_A3"] / b["volume_per_atom_A3"] - 1.0)
        gap_pair = (b["band_gap_eV"], a["band_gap_eV"])
        gaps = "-" if None in gap_pair else f"{gap_pair[0]:.3f}/{gap_pair[1]:.3f}"
        lines.append(
            f"{formula:9s} {a['relax_kpt_density_per_A'] or 5.0:7.1f} {a['start_mesh_gap_eV'] or 0:9.2f} "
            f"{b['n_ionic_steps']:>4}/{a['n_ionic_steps']:<4} {cost_b:13.3f} {cost_a:12.3f} {cost_a / cost_b:6.2f} "
            f"{'-' if d_ef is None else f'{d_ef:.1f}':>10s} {d_v:6.2f} {gaps:>12s}"
        )
    if totals[0]:
        ratio = totals[1] / totals[0]
        lines.append(f"all: {totals[0]:.3f} core-hours before, {totals[1]:.3f} after, ratio {ratio:.2f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", help="formulas (reduced) of the perovskites to run")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/preset_cost"))
    parser.add_argument("--stop-at", help="HH:MM UTC: start nothing new after it")
    parser.add_argument("--report", action="store_true", help="the table from the stored records only")
    parser.add_argument("--elements-only", action="store_true", help="only the elements' SCFs")
    parser.add_argument("--element", help=argparse.SUPPRESS)  # the MPI entry of one element's SCF
    parser.add_argument("--variant", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.report:
        print("\n".join(report_lines()))
    elif args.element:
        element_main(args.element, args.variant, args.workdir)
    else:
        drive(args.only, args.workdir, args.stop_at, args.elements_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
