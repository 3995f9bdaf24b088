"""What ML pre-relaxation saves in DFT, and how well the ML verdicts agree with DFT (not run in CI).

One run, on unique small real structures from ``../shared/data/`` (perov_5
perovskites and CrystaLLM outputs), with the ``fast`` DFT preset:

1. the workflow's own check + dedupe and ML stage (``snakemake <out>/ml/dft_ids.txt``:
   SevenNet-0 relaxes every unique structure and the elemental references);
2. per structure, two GPAW relaxations through the workflow's entry point
   (``mpiexec -n RANKS gpaw python -m dftscreen.relax``): from the generated CIF and
   from the ML-relaxed CIF, one after the other, so an interrupted run has pairs;
3. the elemental references with the same preset (``dftscreen.references``), then
   DFT formation energies and energies above the hull of the DFT relaxations started
   from the ML geometry, compared with the ML ones (:func:`dftscreen.summary.ml_agreement`),
   both hulls over the same structures (elements + these generated structures).

It prints and writes ``<workdir>/report.json``: the ratio of total DFT relaxation wall
time and of ionic steps (with / without pre-relaxation) over the pairs that finished,
the final-energy differences per structure, and the agreement. Everything is resumable:
a rerun skips finished relaxations (and GPAW resumes unfinished ones from their
checkpoints). ``--report`` only prints what exists.

Usage (in the background, on idle CPU only):

    nohup nice -n 19 .venv/bin/python bench/ml_savings.py --workdir /work/bench_runs/ml_savings \\
        > /work/bench_runs/ml_savings.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
PEROVSKITES = SHARED / "reference" / "perov5_sample50"
CRYSTALLM = SHARED / "generated" / "crystallm"
#: Elements left out of the selection: no automatic elemental reference (S, Mn), or started
#: spin-polarised (costly, and the ML model knows nothing of magnetism).
SKIP_ELEMENTS = {"S", "Mn", "V", "Cr", "Fe", "Co", "Ni", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy",
                 "Ho", "Er", "Tm", "Yb"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def candidates(max_sites: int, max_sites_generated: int = 8, n_perovskites: int = 10) -> list[tuple[str, Path]]:
    """(name, CIF) of small real structures: the first perovskites and every small CrystaLLM output
    (most are duplicates of each other, which the check stage's dedupe removes), interleaved by source."""
    from dftscreen.cif_reader import read_structure

    def small(path: Path, max_sites: int = max_sites) -> bool:
        try:
            # The workflow's reader: raw CrystaLLM output is rebuilt from its declared space group.
            structure, _ = read_structure(path)
        except Exception:
            return False
        return len(structure) <= max_sites and not {el.symbol for el in structure.composition} & SKIP_ELEMENTS

    perovskites = [(f"perov5__{p.stem}", p) for p in sorted(PEROVSKITES.glob("*.cif")) if small(p)][:n_perovskites]
    generated = [(f"crystallm__{'__'.join(p.relative_to(CRYSTALLM).with_suffix('').parts)}", p)
                 for p in sorted(CRYSTALLM.rglob("*.cif")) if small(p, max_sites_generated)]
    mixed = []
    for i in range(max(len(perovskites), len(generated))):
        mixed += [x[i] for x in (generated, perovskites) if i < len(x)]
    return mixed


def prepare(workdir: Path, max_sites: int, ranks: int) -> None:
    cifs = workdir / "cifs"
    if not cifs.is_dir():
        cifs.mkdir(parents=True)
        for name, path in candidates(max_sites):
            shutil.copy(path, cifs / f"{name}.cif")
    config = {
        "input": {"cif_dir": "cifs"},
        "output_dir": "out",
        "dft": {"preset": "fast", "resources": {"max_tasks": ranks}},
        "ml": {"screen_e_above_hull_eV_per_atom": None},
    }
    (workdir / "config").mkdir(exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))


def run_ml_stage(workdir: Path) -> None:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
               "--directory", str(workdir), "--cores", "1", "--keep-going", "--rerun-incomplete",
               "out/ml/dft_ids.txt"]
    log("check + ML stage: " + " ".join(command[2:]))
    subprocess.run(command, check=True, env=mpi_env())


def mpi_env() -> dict[str, str]:
    paths = f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=paths)
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env


def gpaw(module: str, args: list[str], ranks: int, logfile: Path) -> float:
    """Run one GPAW entry point under MPI; returns the process wall time (s)."""
    command = ["mpiexec", "--bind-to", "none", "-n", str(ranks), sys.executable, "-m", "gpaw", "python",
               "-m", module, *args]
    logfile.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(logfile, "a") as handle:
        subprocess.run(command, env=mpi_env(), stdout=handle, stderr=subprocess.STDOUT, check=False)
    return time.perf_counter() - start


def relax(workdir: Path, mode: str, sid: str, cif: Path, settings: str, ranks: int) -> dict | None:
    folder = workdir / f"dft_{mode}" / sid
    record = folder / "relax.json"
    if not record.is_file():
        log(f"DFT relax {sid} from the {mode} geometry")
        seconds = gpaw("dftscreen.relax", ["--structure-id", sid, "--cif", str(cif), "--settings", settings,
                                           "--out-json", str(record), "--out-cif", str(folder / "relaxed.cif"),
                                           "--workdir", str(folder)], ranks, folder / "job.log")
        if record.is_file():
            data = json.loads(record.read_text())
            data["process_wall_time_s"] = seconds
            record.write_text(json.dumps(data, indent=1))
    return json.loads(record.read_text()) if record.is_file() else None


def element_reference(workdir: Path, element: str, settings: str, ranks: int) -> dict | None:
    folder = workdir / "dft_references" / element
    record = folder / "relax.json"
    if not record.is_file():
        log(f"DFT elemental reference {element}")
        gpaw("dftscreen.references", ["--element", element, "--structure-id", f"element_{element}",
                                      "--settings", settings, "--out-json", str(record),
                                      "--out-cif", str(folder / "relaxed.cif"), "--workdir", str(folder)],
             ranks, folder / "job.log")
    return json.loads(record.read_text()) if record.is_file() else None


def selected_ids(workdir: Path, n: int) -> list[str]:
    valid = (workdir / "out" / "check" / "valid_ids.txt").read_text().split()
    crystallm = [s for s in valid if s.startswith("crystallm")]
    perov = [s for s in valid if s.startswith("perov5")]
    mixed = []
    for i in range(max(len(crystallm), len(perov))):
        mixed += [x[i] for x in (crystallm, perov) if i < len(x)]
    return mixed[:n]


def report(workdir: Path, ids: list[str]) -> dict:
    """Savings over finished pairs, energy differences, and ML-vs-DFT agreement where references exist."""
    from pymatgen.core import Composition

    from dftscreen import ml, status_codes
    from dftscreen.io import read_json
    from dftscreen.layout import ResultsLayout
    from dftscreen.stability import EnergyRecord, chemical_potentials, formation_energy_per_atom, hull_analysis
    from dftscreen.summary import ml_agreement

    layout = ResultsLayout.of(workdir / "out")
    rows = []
    for sid in ids:
        ml_path = Path(layout.ml_record(sid))
        ml_record = read_json(ml_path) if ml_path.is_file() else {}
        row = {"structure_id": sid, "formula": ml_record.get("formula"),
               "ml_optimizer_steps": ml_record.get("n_steps"), "ml_wall_time_s": ml_record.get("wall_time_s")}
        if ml_record.get("initial_volume_A3"):
            row["ml_volume_change_pct"] = 100 * (ml_record["final_volume_A3"] / ml_record["initial_volume_A3"] - 1)
        for mode in ("generated", "ml"):
            path = workdir / f"dft_{mode}" / sid / "relax.json"
            record = read_json(path) if path.is_file() else {}
            prefix = f"dft_from_{mode}"
            row[f"{prefix}_status"] = record.get("status")
            row[f"{prefix}_ionic_steps"] = record.get("n_ionic_steps")
            row[f"{prefix}_wall_time_s"] = record.get("wall_time_s")
            row[f"{prefix}_energy_per_atom_eV"] = record.get("energy_per_atom_eV")
            row[f"{prefix}_volume_A3"] = record.get("final_volume_A3")
        e_generated, e_ml = row["dft_from_generated_energy_per_atom_eV"], row["dft_from_ml_energy_per_atom_eV"]
        if e_generated is not None and e_ml is not None:
            row["final_energy_ml_start_minus_generated_start_meV_per_atom"] = 1000 * (e_ml - e_generated)
        rows.append(row)
    table = pd.DataFrame(rows)
    pairs = table.dropna(subset=["dft_from_generated_wall_time_s", "dft_from_ml_wall_time_s"])
    result: dict = {"n_structures": len(ids), "n_pairs_finished": int(len(pairs))}
    if len(pairs):
        result.update(
            dft_wall_time_s_without_ml=float(pairs["dft_from_generated_wall_time_s"].sum()),
            dft_wall_time_s_with_ml=float(pairs["dft_from_ml_wall_time_s"].sum()),
            ml_wall_time_s=float(pairs["ml_wall_time_s"].sum()),
            wall_time_ratio_with_over_without=float(
                pairs["dft_from_ml_wall_time_s"].sum() / pairs["dft_from_generated_wall_time_s"].sum()),
            ionic_steps_ratio_with_over_without=float(
                pairs["dft_from_ml_ionic_steps"].sum() / pairs["dft_from_generated_ionic_steps"].sum()),
            max_abs_final_energy_difference_meV_per_atom=float(
                pairs["final_energy_ml_start_minus_generated_start_meV_per_atom"].abs().max()),
        )
    result["pairs"] = pairs.to_dict(orient="records")

    # Agreement: DFT (started from the ML geometry) and ML hulls over the same structures and elements.
    dft_ok = {sid: read_json(workdir / "dft_ml" / sid / "relax.json") for sid in ids
              if (workdir / "dft_ml" / sid / "relax.json").is_file()}
    dft_ok = {sid: r for sid, r in dft_ok.items() if r.get("status") == status_codes.RELAXED}
    elements = sorted({el.symbol for r in dft_ok.values() for el in Composition(r["formula"]).elements})
    dft_refs = [read_json(workdir / "dft_references" / el / "relax.json") for el in elements
                if (workdir / "dft_references" / el / "relax.json").is_file()]
    dft_elements = [EnergyRecord(r["element"], Composition(r["formula"]), r["energy_eV"]) for r in dft_refs
                    if r.get("status") == status_codes.RELAXED]
    covered = {e.name for e in dft_elements}
    compared = {sid: r for sid, r in dft_ok.items()
                if {el.symbol for el in Composition(r["formula"]).elements} <= covered}
    energies = [EnergyRecord(sid, Composition(r["formula"]), r["energy_eV"]) for sid, r in compared.items()]
    hull = hull_analysis(energies, dft_elements)
    mu = chemical_potentials(dft_elements)
    ml_refs = read_json(layout.ml_references)
    ml_refs = {"elements": [r for r in ml_refs["elements"] if r.get("element") in covered], "phases": []}
    ml_screen = ml.screen(list(compared), ml.read_records(layout, compared), ml_refs, None)
    agreement_rows = []
    for energy in energies:
        verdict = ml_screen["structures"][energy.name]
        agreement_rows.append({
            "structure_id": energy.name, "status": status_codes.OK, "ml_model": ml.DEFAULT_MODEL,
            "formation_energy_eV_per_atom": formation_energy_per_atom(energy, mu),
            "e_above_hull_vs_generated_only_eV_per_atom": hull[energy.name].get("e_above_hull_eV_per_atom"),
            ml.ML_FORMATION_COLUMN: verdict.get(ml.ML_FORMATION_COLUMN),
            ml.ML_E_HULL_COLUMN_NO_PHASES: verdict.get(ml.ML_E_HULL_COLUMN_NO_PHASES),
        })
    result["agreement_rows"] = agreement_rows
    result["agreement"] = ml_agreement(pd.DataFrame(agreement_rows), 0.1) if agreement_rows else None
    result["elements_needed"] = elements
    result["elements_done"] = sorted(covered)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/work/bench_runs/ml_savings"))
    parser.add_argument("--n", type=int, default=12, help="unique structures to relax (at least 10)")
    parser.add_argument("--max-sites", type=int, default=5)
    parser.add_argument("--ranks", type=int, default=1, help="MPI ranks per GPAW job")
    parser.add_argument("--report", action="store_true", help="only print the report of what exists")
    parser.add_argument("--references-only", action="store_true",
                        help="only the DFT elemental references of the selected structures (in order of first "
                        "need), e.g. in a second process beside a running bench; finished ones are skipped")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    from pymatgen.core import Composition

    from dftscreen.settings import resolve_settings

    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if not (args.report or args.references_only):
        prepare(workdir, args.max_sites, args.ranks)
        run_ml_stage(workdir)
    ids = selected_ids(workdir, args.n)
    log(f"{len(ids)} unique structures: {', '.join(ids)}")
    settings = json.dumps(resolve_settings("fast", {}), sort_keys=True)
    layout_cif = lambda sid: workdir / "out" / "ml" / "structures" / sid / "relaxed.cif"  # noqa: E731
    if args.references_only:
        from dftscreen.io import read_json
        from dftscreen.layout import ResultsLayout

        layout = ResultsLayout.of(workdir / "out")
        formulas = [read_json(layout.ml_record(sid))["formula"] for sid in ids]
        for element in dict.fromkeys(el.symbol for f in formulas for el in Composition(f).elements):
            element_reference(workdir, element, settings, args.ranks)
    elif not args.report:
        for sid in ids:
            relax(workdir, "generated", sid, workdir / "cifs" / f"{sid}.cif", settings, args.ranks)
            start = layout_cif(sid)
            if start.is_file():
                relax(workdir, "ml", sid, start, settings, args.ranks)
            write_report(workdir, ids)
        elements = sorted({el.symbol for sid in ids if (workdir / "dft_ml" / sid / "relax.json").is_file()
                           for el in Composition(json.loads((workdir / "dft_ml" / sid / "relax.json").read_text())
                                                 ["formula"]).elements})
        for element in elements:
            element_reference(workdir, element, settings, args.ranks)
            write_report(workdir, ids)
    result = write_report(workdir, ids)
    print(json.dumps({k: v for k, v in result.items() if k not in ("pairs", "agreement_rows")}, indent=1))
    print(markdown(result))
    return 0


def markdown(result: dict) -> str:
    """The per-structure table of finished pairs, for bench/README.md."""
    lines = ["| structure | formula | ML steps | ML s | ML ΔV % | DFT steps without / with | DFT s without / with "
             "| ΔE with - without (meV/atom) |", "|---|---|---|---|---|---|---|---|"]
    for p in result["pairs"]:
        lines.append(
            f"| {p['structure_id']} | {p['formula']} | {p['ml_optimizer_steps']} | {p['ml_wall_time_s']:.1f} "
            f"| {p.get('ml_volume_change_pct', float('nan')):+.1f} "
            f"| {p['dft_from_generated_ionic_steps']:.0f} / {p['dft_from_ml_ionic_steps']:.0f} "
            f"| {p['dft_from_generated_wall_time_s']:.0f} / {p['dft_from_ml_wall_time_s']:.0f} "
            f"| {p.get('final_energy_ml_start_minus_generated_start_meV_per_atom', float('nan')):+.2f} |")
    return "\n".join(lines)


def write_report(workdir: Path, ids: list[str]) -> dict:
    result = report(workdir, ids)
    (workdir / "report.json").write_text(json.dumps(result, indent=1, default=str))
    log(f"report: {result['n_pairs_finished']} of {result['n_structures']} pairs finished")
    return result


if __name__ == "__main__":
    sys.exit(main())
