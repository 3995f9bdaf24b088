# Everything non-declarative: config validation, input discovery, input functions.
import json
import sys
from pathlib import Path

from snakemake.utils import validate

from dftscreen.aggregate import build_table, write_table
from dftscreen.inputs import STRUCTURE_ID_PATTERN, discover_cifs
from dftscreen.io import read_json
from dftscreen.resources import ResourcePolicy
from dftscreen.settings import deep_merge, resolve_settings


validate(config, workflow.source_path("../schemas/config.schema.yaml"))

OUT = config["output_dir"]
DFT = config["dft"]
# One listing of the input folder per Snakemake start; the check job re-derives
# the same ids with the same function.
INPUTS = {item.structure_id: item for item in discover_cifs(config["input"]["cif_dir"])}
DFT_SETTINGS = resolve_settings(DFT["preset"], DFT["overrides"], DFT["presets"], DFT["scf_ladder"])
RESOURCES = ResourcePolicy.from_config(DFT["resources"])
# GPAW's launcher from the environment running Snakemake (works without activating it).
GPAW_PYTHON = f"{sys.executable} -m gpaw python"


wildcard_constraints:
    sid=STRUCTURE_ID_PATTERN,


def input_cif(wildcards):
    """The original CIF of one structure id."""
    return str(INPUTS[wildcards.sid].path)


def dft_settings_json(wildcards):
    """Resolved DFT settings of one structure, as JSON.

    Passed to the GPAW jobs as params, so changing the preset (or this
    structure's override) reruns exactly the jobs it affects.
    """
    settings = DFT_SETTINGS
    override = DFT["structure_overrides"].get(wildcards.sid)
    if override:
        settings = deep_merge(settings, override)
    return json.dumps(settings, sort_keys=True)


_N_SITES = {}


def n_sites(wildcards):
    """Number of atoms of a structure, from the check checkpoint's table (read once)."""
    if not _N_SITES:
        with open(checkpoints.check.get().output.table) as handle:
            _N_SITES.update({r["structure_id"]: r.get("n_sites") or 1 for r in json.load(handle)})
    return _N_SITES.get(wildcards.sid, 1)


def mpi_tasks(wildcards):
    return RESOURCES.tasks(n_sites(wildcards))


def runtime_min(wildcards, attempt):
    return RESOURCES.runtime_min(n_sites(wildcards), attempt)


def mem_mb_per_task(wildcards, attempt):
    return RESOURCES.mem_mb_per_task(n_sites(wildcards), attempt)


def valid_structure_ids():
    """Ids the check checkpoint passed on to DFT (re-evaluated after it ran)."""
    with open(checkpoints.check.get().output.valid_ids) as handle:
        return [line.strip() for line in handle if line.strip()]


def all_relax_records(wildcards):
    return expand(f"{OUT}/dft/{{sid}}/relax.json", sid=valid_structure_ids())


def all_properties_records(wildcards):
    return expand(f"{OUT}/dft/{{sid}}/properties.json", sid=valid_structure_ids())


def get_final_output(wildcards):
    """The results table, and every per-structure record as an explicit target.

    Snakemake accepts missing intermediate files when the outputs downstream of
    them are newer (that is how temp() works), so deleting one structure's DFT
    folder would otherwise not rerun it.
    """
    return [
        f"{OUT}/results.csv",
        f"{OUT}/results.parquet",
        *all_relax_records(wildcards),
        *all_properties_records(wildcards),
    ]


def write_partial_table():
    """After a failed run, write every row we can (missing DFT results as not_finished)."""
    checks_path = Path(OUT) / "check" / "checks.json"
    if not checks_path.is_file():
        return
    table = build_table(read_json(checks_path), Path(OUT) / "dft")
    write_table(table, Path(OUT) / "results_partial.csv", Path(OUT) / "results_partial.parquet")
    print(
        f"dftscreen: some jobs failed; partial table with every row written to {OUT}/results_partial.csv. "
        "Rerun the same command to redo only what failed.",
        file=sys.stderr,
    )
