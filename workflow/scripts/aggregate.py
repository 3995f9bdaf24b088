"""Thin glue: build and write the results table (Snakemake `script:`)."""

import json
import logging
from pathlib import Path

from dftscreen.aggregate import add_targets, add_verdicts, build_table, status_counts, write_table
from dftscreen.compare_known import add_known_columns, chosen_phase_names
from dftscreen.io import atomic_write_json, read_json
from dftscreen.provenance import run_provenance
from dftscreen.ml import add_ml_columns
from dftscreen.summary import summarize

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
run_settings = json.loads(snakemake.params.settings)  # noqa: F821
threshold = snakemake.params.stable_threshold_eV_per_atom  # noqa: F821
table = build_table(
    read_json(snakemake.input.checks),  # noqa: F821
    snakemake.params.dft_dir,  # noqa: F821
    element_records=(
        [read_json(p) for p in snakemake.input.elements]  # noqa: F821
        if snakemake.params.with_formation_energies  # noqa: F821
        else None
    ),
    # User-supplied phases, then those chosen from the known set (relaxed in the reference library).
    phase_records=[read_json(p) for p in [*snakemake.input.phases, *snakemake.input.known_phases]],  # noqa: F821
    phase_names=chosen_phase_names(read_json(snakemake.input.chosen_phases)),  # noqa: F821
    run_settings=run_settings,
)
novelty = read_json(snakemake.input.novelty)  # noqa: F821
relaxed_novelty = read_json(snakemake.input.relaxed_novelty[0]) if snakemake.input.relaxed_novelty else None  # noqa: F821
table = add_known_columns(table, novelty, relaxed_novelty)
if snakemake.input.ml:  # noqa: F821
    table = add_ml_columns(table, snakemake.params.out_dir, snakemake.params.ml_prerelax)  # noqa: F821
# Verdicts last: they read the known-materials, ML and target columns.
table = add_verdicts(add_targets(table, snakemake.params.targets), threshold)  # noqa: F821
write_table(table, snakemake.output.csv, snakemake.output.parquet)  # noqa: F821
summary = summarize(
    table,
    threshold,
    provenance=run_provenance(run_settings),
    known_set=novelty.get("known_set"),
    training_set=novelty.get("training_set"),
)
atomic_write_json(snakemake.output.summary, summary)  # noqa: F821
logging.info("rows per status: %s", status_counts(table))
if summary["warning"]:
    logging.warning(summary["warning"])
# A complete table supersedes any partial one from an earlier failed run.
out_dir = Path(snakemake.output.csv).parent  # noqa: F821
for stale in ("results_partial.csv", "results_partial.parquet"):
    (out_dir / stale).unlink(missing_ok=True)
