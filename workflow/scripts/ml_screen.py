"""Thin glue: ML hull, pre-screen and its audit; lists the ids that go on to DFT (Snakemake `script:`)."""

import logging

from dftscreen.io import read_json
from dftscreen.layout import ResultsLayout
from dftscreen.ml_hull import audit, read_records, screen, write_screen

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
layout = ResultsLayout.of(snakemake.params.out_dir)  # noqa: F821
result = screen(
    snakemake.params.ids,  # noqa: F821
    read_records(layout, snakemake.params.ids),  # noqa: F821
    read_json(snakemake.input.references),  # noqa: F821
    snakemake.params.threshold,  # noqa: F821
    # One model per hull: the model every batch of this run used.
    checkpoint_sha256=next((read_json(p)["ml_checkpoint_sha256"] for p in snakemake.input.batches), None),  # noqa: F821
)
result = audit(result, fraction=snakemake.params.audit_fraction, seed=snakemake.params.audit_seed)  # noqa: F821
write_screen(result, snakemake.output.screen, snakemake.output.dft_ids)  # noqa: F821
logging.info(
    "%d structures go to DFT, %d screened out (threshold %s eV/atom), %d of them audited",
    len(result["dft_ids"]),
    len(result["screened_out_ids"]),
    snakemake.params.threshold,  # noqa: F821
    len(result["audited_ids"]),
)
