"""Thin glue: choose the structures that get DFT phonons and size their jobs (Snakemake `script:`)."""

import json
import logging

from dftscreen.io import atomic_write_json
from dftscreen.layout import ResultsLayout
from dftscreen.phonon_results import plan_dft_phonons
from dftscreen.phonons import PhononSettings
from dftscreen.size_gate import GateSettings
from dftscreen.table import table_for_job

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
layout = ResultsLayout.of(snakemake.params.out_dir)  # noqa: F821
table = table_for_job(snakemake.input, snakemake.params)  # noqa: F821
gate = snakemake.params.gate  # noqa: F821
plan = plan_dft_phonons(
    table,
    {sid: layout.relaxed_cif(sid) for sid in table["structure_id"]},
    mode=snakemake.params.mode,  # noqa: F821
    stable_threshold_eV_per_atom=snakemake.params.stable_threshold_eV_per_atom,  # noqa: F821
    settings=PhononSettings.from_config(snakemake.params.phonons),  # noqa: F821
    gate=GateSettings.from_dft_settings(gate["settings"], gate["resources"]),
)
atomic_write_json(snakemake.output.plan, plan)  # noqa: F821
logging.info("DFT phonons for %d structure(s): %s", len(plan["runnable"]), json.dumps(plan["runnable"]))
for sid, job in plan["jobs"].items():
    if job["too_large"]:
        logging.info("%s: %s", sid, job["too_large"])
