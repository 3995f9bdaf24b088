"""Thin glue: write the HTML report of the run (Snakemake `script:`)."""

import json
import logging

import pandas as pd

from dftscreen.io import read_json
from dftscreen.report import build_report

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
index = build_report(
    out_dir=snakemake.params.out_dir,  # noqa: F821
    table=pd.read_parquet(snakemake.input.table),  # noqa: F821
    summary=read_json(snakemake.input.summary),  # noqa: F821
    report_dir=snakemake.params.report_dir,  # noqa: F821
    run_settings=json.loads(snakemake.params.settings),  # noqa: F821
    targets_config=snakemake.params.targets,  # noqa: F821
    stable_threshold_eV_per_atom=snakemake.params.stable_threshold_eV_per_atom,  # noqa: F821
    cohorts=read_json(snakemake.input.cohorts),  # noqa: F821
    cohort_ordered=snakemake.params.cohort_ordered,  # noqa: F821
)
logging.info("report written to %s", index)
