"""How long `snakemake -n` takes on this workflow with 10,000 and 100,000 input CIFs.

Not a test: prints seconds and peak memory (RSS of the Snakemake process) per case,
beside a naive per-CIF chain (check -> relax -> properties per input, inputs found
with glob_wildcards, one aggregate) measured in the same run.

Cases (N input CIFs each, tiny files written to --root):
  dftscreen, before checks  the dry run a user does first: only the one batched
                            check job and what follows it are planned
  dftscreen, after checks   check/checks.json and valid_ids.txt exist (written
                            by this script, not by running the checks: a real
                            check of 100,000 files takes an hour) and
                            --dft-fraction of the inputs reach DFT; their relax
                            and properties jobs are planned
  relax+properties as one   the same, on a copy of the workflow where one job per
                            structure writes both records (the alternative to
                            two jobs per structure weighed in bench/README.md)
  with packs of 8          the same with --groups/--group-components (Snakemake's
                            group jobs: the alternative the workflow does not use)
  one job per pack of 8     the same with dft.structures_per_pack: 8 (the workflow
                            plans one dft_pack job per 8 structures, dftscreen.dft_pack)
  dftscreen, DFT finished   every relax and properties record and the table exist
                            (2 x the DFT structures outputs to check; no Snakemake
                            metadata: see bench/README.md for its cost); and with
                            one job per pack of 8, where the pack records are the outputs
  naive chain               three rules per input

Seconds are wall time; "CPU s" is user + system time of the Snakemake process,
less sensitive to other load on the machine.

Usage:
  .venv/bin/python bench/dryrun_scale.py                      # 10,000 and 100,000
  .venv/bin/python bench/dryrun_scale.py --sizes 10000 --naive-max 10000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# Snakemake's own packing, group jobs (weighed against dft.structures_per_pack in bench/README.md).
PACKS = ["--groups", "relax=dft", "properties=dft", "--group-components", "dft=8",
         # as under the SLURM executor: a pack of 8 needs more than the 2 local cores
         "--cores", "1000"]
FORMULAS = ["NaCl", "MgO", "KBr", "CaTiO3", "SrTiO3", "GaAs", "ZnS", "LiF"]

TINY_CIF = """data_x
_symmetry_space_group_name_H-M 'P 1'
_cell_length_a 4.0
_cell_length_b 4.0
_cell_length_c 4.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Na1 Na 0 0 0
Cl1 Cl 0.5 0.5 0.5
"""

NAIVE_SNAKEFILE = """
IDS, = glob_wildcards("cifs/{sid}.cif")

rule all:
    input: "out/results.csv"

rule check:
    input: "cifs/{sid}.cif"
    output: "out/check/{sid}.json"
    shell: "echo ok > {output}"

rule relax:
    input: "out/check/{sid}.json"
    output: "out/dft/{sid}/relax.json"
    shell: "echo ok > {output}"

rule properties:
    input: "out/dft/{sid}/relax.json"
    output: "out/dft/{sid}/properties.json"
    shell: "echo ok > {output}"

rule aggregate:
    input: expand("out/dft/{sid}/properties.json", sid=IDS)
    output: "out/results.csv"
    shell: "touch {output}"
"""


def write_inputs(folder: Path, n: int) -> list[str]:
    """N tiny CIFs in ``folder/cifs`` (kept between runs of the bench); returns their ids."""
    cifs = folder / "cifs"
    cifs.mkdir(parents=True, exist_ok=True)
    ids = [f"gen{i:06d}" for i in range(n)]
    if len(list(os.scandir(cifs))) != n:
        for sid in ids:
            (cifs / f"{sid}.cif").write_text(TINY_CIF)
    return ids


def write_config(folder: Path) -> None:
    # The per-structure DFT jobs are what this bench plans. The ML stage (on by default) is a
    # checkpoint of its own in front of them, and the ~20 elemental references are a fixed cost
    # whose records live in the settings-keyed reference library: both off, so "after checks"
    # plans exactly the DFT jobs and "DFT finished" has nothing left to do.
    config = {"input": {"cif_dir": "cifs"}, "output_dir": "out", "dft": {"preset": "test"},
              "ml": {"enabled": False}, "stability": {"elemental_references": False}}
    (folder / "config").mkdir(exist_ok=True)
    (folder / "config" / "config.yaml").write_text(yaml.safe_dump(config))


def write_check_outputs(folder: Path, ids: list[str], dft_fraction: float) -> int:
    """checks.json and valid_ids.txt as the check job writes them; returns how many reach DFT."""
    every = max(1, round(1 / dft_fraction))
    records = []
    valid = []
    for i, sid in enumerate(ids):
        ok = i % every == 0
        records.append({
            "structure_id": sid, "source_file": f"{sid}.cif", "valid": ok, "dft_ready": ok,
            "status": None if ok else "duplicate", "reason": "" if ok else "same crystal as gen000000",
            "reduced_formula": FORMULAS[i % len(FORMULAS)], "n_sites": 2,
        })
        if ok:
            valid.append(sid)
    check_dir = folder / "out" / "check"
    check_dir.mkdir(parents=True, exist_ok=True)
    (check_dir / "checks.json").write_text(json.dumps(records))
    (check_dir / "valid_ids.txt").write_text("".join(f"{sid}\n" for sid in valid))
    # Newer than every input, as after a real check job.
    now = time.time() + 5
    for name in ("checks.json", "valid_ids.txt"):
        os.utime(check_dir / name, (now, now))
    return len(valid)


def merged_workflow(root: Path) -> Path:
    """A copy of workflow/ where relax writes properties.json too (no properties rule); its Snakefile."""
    copy = root / "workflow_one_dft_job"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(REPO / "workflow", copy)
    snakefile = copy / "Snakefile"
    text = snakefile.read_text()
    assert 'include: "rules/properties.smk"\n' in text
    snakefile.write_text(text.replace('include: "rules/properties.smk"\n', ""))
    relax = copy / "rules" / "relax.smk"
    text = relax.read_text()
    record = '        record=LAYOUT.relax_record("{sid}"),\n'
    out_cif = '" --out-cif {params.relaxed_cif:q}'
    assert record in text and out_cif in text, "relax.smk changed: update merged_workflow()"
    text = text.replace(record, record + '        properties=LAYOUT.properties_record("{sid}"),\n', 1)
    text = text.replace(
        out_cif,
        out_cif + ' && {resources.mpi} -n {resources.tasks} {params.gpaw_python}"\n'
        '        " -m dftscreen.properties --structure-id {wildcards.sid} --relax-json {output.record:q}"\n'
        '        " --settings {params.settings:q} --out-json {output.properties:q}"\n        "',
        1,
    )
    relax.write_text(text)
    return snakefile


def one_job_per_pack(folder: Path, structures_per_pack: int = 8) -> list[str]:
    """Snakemake options that switch on dft.structures_per_pack (a config file merged over the run's)."""
    packs = folder / "packs.yaml"
    packs.write_text(yaml.safe_dump({"dft": {"structures_per_pack": structures_per_pack}}))
    return ["--configfile", str(folder / "config" / "config.yaml"), str(packs)]


def write_pack_records(folder: Path, structures_per_pack: int = 8) -> int:
    """The pack records and member lists of a finished run with one job per pack (newer than the check)."""
    from dftscreen.dft_pack import plan_packs
    from dftscreen.layout import ResultsLayout

    ids = (folder / "out" / "check" / "valid_ids.txt").read_text().split()
    layout = ResultsLayout.of(folder / "out")
    later = time.time() + 8
    packs = plan_packs(ids, structures_per_pack)
    for name, members in packs.items():
        for path, text in ((Path(layout.pack_members(name)), "\n".join(members) + "\n"),
                           (Path(layout.pack_record(name)), "{}")):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            os.utime(path, (later, later))
    return len(packs)


def write_finished_outputs(folder: Path) -> int:
    """Every DFT record and table file, newer than the check outputs; returns how many."""
    ids = (folder / "out" / "check" / "valid_ids.txt").read_text().split()
    later = time.time() + 10
    written = 0

    def touch(path: Path, mtime: float) -> None:
        nonlocal written
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
        os.utime(path, (mtime, mtime))
        written += 1

    for sid in ids:
        touch(folder / "out" / "dft" / sid / "relax.json", later)
        touch(folder / "out" / "dft" / sid / "properties.json", later + 1)
    for name in ("results.csv", "results.parquet", "summary.json"):
        touch(folder / "out" / name, later + 2)
    from dftscreen.report import figure_names

    for name in ("index.html", *figure_names()):  # the bench config has no targets
        touch(folder / "out" / "report" / name, later + 3)
    return written


def timed_dry_run(folder: Path, snakefile: Path, extra: list[str]) -> tuple[float, float, float, int]:
    """Seconds, peak RSS (MB), CPU seconds and number of planned jobs of `snakemake -n` in ``folder``."""
    shutil.rmtree(folder / ".snakemake", ignore_errors=True)
    command = [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--cores", "2",
               "--snakefile", str(snakefile), "--directory", str(folder), *extra]
    # A fresh process per case: ru_maxrss of children is the largest child so far,
    # so each measurement runs in its own wrapper process.
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "dt = time.perf_counter() - t\n"
        "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(p.returncode, dt, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime)\n"
        "print((p.stdout + p.stderr)[-3000:])\n"
    )
    proc = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True)
    first, _, tail = proc.stdout.partition("\n")
    code, seconds, rss, cpu = first.split()
    if code != "0":
        raise RuntimeError(f"snakemake -n failed in {folder}:\n{tail}")
    total = re.search(r"^total\s+(\d+)", tail, re.MULTILINE)
    n_jobs = int(total.group(1)) if total else 0  # "Nothing to be done": no job table
    return float(seconds), float(rss), float(cpu), n_jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dft-fraction", type=float, default=0.1)
    parser.add_argument("--naive-max", type=int, default=100_000, help="largest size run with the naive chain")
    parser.add_argument("--packs-max", type=int, default=1_000,
                        help="largest size run with packs (Snakemake's grouping grows faster than linearly)")
    parser.add_argument("--root", type=Path, default=Path("/tmp/dftscreen_dryrun_bench"))
    args = parser.parse_args()

    snakefile = REPO / "workflow" / "Snakefile"
    naive_snakefile = args.root / "naive.smk"
    args.root.mkdir(parents=True, exist_ok=True)
    naive_snakefile.write_text(NAIVE_SNAKEFILE)
    one_job_snakefile = merged_workflow(args.root)
    print(f"snakemake -n --quiet rules --cores 2, {os.cpu_count()} CPUs")
    print(f"{'case':<46} {'inputs':>8} {'jobs':>7} {'seconds':>8} {'CPU s':>7} {'peak MB':>8}")

    def report(label: str, n: int, result: tuple[float, float, float, int]) -> None:
        seconds, rss, cpu, n_jobs = result
        print(f"{label:<46} {n:>8} {n_jobs:>7} {seconds:>8.1f} {cpu:>7.1f} {rss:>8.0f}", flush=True)

    for n in args.sizes:
        folder = args.root / f"dftscreen_{n}"
        ids = write_inputs(folder, n)
        write_config(folder)
        shutil.rmtree(folder / "out", ignore_errors=True)
        report("dftscreen, before checks", n, timed_dry_run(folder, snakefile, []))
        n_dft = write_check_outputs(folder, ids, args.dft_fraction)
        report(f"dftscreen, after checks ({n_dft} to DFT)", n, timed_dry_run(folder, snakefile, []))
        report("  relax+properties as one job per structure", n, timed_dry_run(folder, one_job_snakefile, []))
        if n <= args.packs_max:
            report("  with packs of 8 (Snakemake's group jobs)", n, timed_dry_run(folder, snakefile, PACKS))
        pack_options = one_job_per_pack(folder)
        report("  one job per pack of 8 (structures_per_pack)", n, timed_dry_run(folder, snakefile, pack_options))
        n_packs = write_pack_records(folder)
        n_outputs = write_finished_outputs(folder)
        report(f"dftscreen, DFT finished ({n_outputs} outputs)", n, timed_dry_run(folder, snakefile, []))
        report(f"  one job per pack of 8 ({n_packs} pack records)", n, timed_dry_run(folder, snakefile, pack_options))
        if n <= args.naive_max:
            naive = args.root / f"naive_{n}"
            write_inputs(naive, n)
            shutil.rmtree(naive / "out", ignore_errors=True)
            report("naive chain (3 rules per input)", n, timed_dry_run(naive, naive_snakefile, []))


if __name__ == "__main__":
    main()
