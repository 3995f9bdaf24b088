"""Thin glue: ML-relax one batch of structures, loading the model once (Snakemake `script:`)."""

import logging

from dftscreen.layout import ResultsLayout
from dftscreen.ml import MLSettings, load_calculator, run_batch

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
settings = MLSettings.from_config(snakemake.params.ml)  # noqa: F821
device = snakemake.config["ml"]["device"]  # noqa: F821
summary = run_batch(
    list(zip(snakemake.params.ids, snakemake.input.cifs)),  # noqa: F821
    ResultsLayout.of(snakemake.params.out_dir),  # noqa: F821
    settings,
    lambda: load_calculator(settings.model, snakemake.threads, device),  # noqa: F821
    out_json=snakemake.output.record,  # noqa: F821
    on_done=lambda sid, record: logging.info("%s: %s %s", sid, record.get("status"), record.get("reason", "")),
)
logging.info("computed %d, reused %d finished earlier", len(summary["computed"]), len(summary["reused"]))
