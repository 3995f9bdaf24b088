"""Thin glue: build and write the results table and summary.json (Snakemake `script:`)."""

import json
import logging
from pathlib import Path

from dftscreen.cohort_table import write_run_cohorts
from dftscreen.io import atomic_write_json, read_json
from dftscreen.layout import ResultsLayout
from dftscreen.provenance import run_provenance
from dftscreen.summary import summarize
from dftscreen.table import status_counts, table_for_job, write_table

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
run_settings = json.loads(snakemake.params.settings)  # noqa: F821
threshold = snakemake.params.stable_threshold_eV_per_atom  # noqa: F821
novelty = read_json(snakemake.input.novelty)  # noqa: F821
table = table_for_job(snakemake.input, snakemake.params)  # noqa: F821
write_table(table, snakemake.output.csv, snakemake.output.parquet)  # noqa: F821
summary = summarize(
    table,
    stable_threshold_eV_per_atom=threshold,
    provenance=run_provenance(run_settings),
    known_set=novelty.get("known_set"),
    training_set=novelty.get("training_set"),
)
# The phases the hull lacks because the size gate refused their DFT (each affected row says so too).
summary["hull"]["left_out_too_large"] = snakemake.params.too_large_phases  # noqa: F821
# Per-cohort rates, comparisons with the baseline and trends (one cohort "all" without config cohorts).
summary["cohorts"] = write_run_cohorts(
    table,
    snakemake.params.cohorts,  # noqa: F821
    snakemake.output.cohorts_csv,  # noqa: F821
    snakemake.output.cohorts_json,  # noqa: F821
    audit_fraction=snakemake.params.audit_fraction if snakemake.input.ml else 0.0,  # noqa: F821
    dft_budget=snakemake.params.dft_budget,  # noqa: F821
    # Conditioning: computed against requested target values per condition, with the baseline's window.
    targets_config=snakemake.params.targets,  # noqa: F821
)
atomic_write_json(snakemake.output.summary, summary)  # noqa: F821
logging.info("rows per status: %s", status_counts(table))
if summary["warning"]:
    logging.warning(summary["warning"])
# A complete table supersedes any partial one from an earlier failed run.
layout = ResultsLayout.of(Path(snakemake.output.csv).parent)  # noqa: F821
for stale in (layout.partial_csv, layout.partial_parquet):
    Path(stale).unlink(missing_ok=True)
