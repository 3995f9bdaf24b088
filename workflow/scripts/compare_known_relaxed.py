"""Thin glue: novelty of the DFT-relaxed structures against the known database (Snakemake `script:`)."""

import logging

from dftscreen.compare_known import relaxed_novelty
from dftscreen.dedupe import MatchSettings
from dftscreen.io import atomic_write_json

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
params = snakemake.params  # noqa: F821
match = MatchSettings.from_config(params.match)
records = dict(zip(params.structure_ids, params.relax_records))
novelty = relaxed_novelty(
    records,
    known_config=dict(params.known),
    match=match,
    workers=snakemake.threads,  # noqa: F821
    known_index_dir=params.known_index_dir,
    log=logging.getLogger("compare_known_relaxed"),
)
atomic_write_json(snakemake.output.novelty, novelty)  # noqa: F821
