# Everything non-declarative: config validation, input discovery, input functions.
import json
import sys
from pathlib import Path

from snakemake.utils import validate

from dftscreen.aggregate import build_table, write_table
from dftscreen.inputs import STRUCTURE_ID_PATTERN, discover_cifs
from dftscreen.io import read_json
from dftscreen.settings import resolve_settings


validate(config, workflow.source_path("../schemas/config.schema.yaml"))

OUT = config["output_dir"]
DFT = config["dft"]
# One listing of the input folder per Snakemake start; the check job re-derives
# the same ids with the same function.
INPUTS = {item.structure_id: item for item in discover_cifs(config["input"]["cif_dir"])}
DFT_SETTINGS = resolve_settings(DFT["preset"], DFT["overrides"], DFT["presets"])
# Passed to the GPAW jobs as params, so changing the preset reruns them.
DFT_SETTINGS_JSON = json.dumps(DFT_SETTINGS, sort_keys=True)
# GPAW's launcher from the environment running Snakemake (works without activating it).
GPAW_PYTHON = f"{sys.executable} -m gpaw python"


wildcard_constraints:
    sid=STRUCTURE_ID_PATTERN,


def input_cif(wildcards):
    """The original CIF of one structure id."""
    return str(INPUTS[wildcards.sid].path)


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
