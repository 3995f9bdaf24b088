"""Thin glue: ML-relax the elemental references and reference phases (Snakemake `script:`)."""

import logging

from dftscreen.layout import ResultsLayout
from dftscreen.ml import MLSettings, load_calculator, relax_references

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
settings = MLSettings.from_config(snakemake.params.ml)  # noqa: F821
device = snakemake.config["ml"]["device"]  # noqa: F821
records = relax_references(
    snakemake.params.elements,  # noqa: F821
    snakemake.params.element_cifs,  # noqa: F821
    snakemake.params.phases,  # noqa: F821
    ResultsLayout.of(snakemake.params.out_dir),  # noqa: F821
    settings,
    lambda: load_calculator(settings.model, snakemake.threads, device),  # noqa: F821
    out_json=snakemake.output.record,  # noqa: F821
)
for record in records["elements"] + records["phases"]:
    logging.info("%s: %s %s", record.get("element") or record.get("structure_id"), record["status"],
                 record.get("reason", ""))
