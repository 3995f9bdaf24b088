"""Thin glue: novelty of the DFT-relaxed structures against the known database (Snakemake `script:`).

Logging goes to the job's log; a known set that cannot be used ends the job with one sentence there.
"""

from dftscreen.compare_known import job_log, relaxed_novelty
from dftscreen.dedupe import MatchSettings
from dftscreen.io import atomic_write_json

params = snakemake.params  # noqa: F821
with job_log("compare_known_relaxed", snakemake.log[0]) as log:  # noqa: F821
    match = MatchSettings.from_config(params.match)
    records = dict(zip(params.structure_ids, params.relax_records))
    novelty = relaxed_novelty(
        records,
        known_config=dict(params.known),
        match=match,
        workers=snakemake.threads,  # noqa: F821
        known_index_dir=params.known_index_dir,
        log=log,
    )
    atomic_write_json(snakemake.output.novelty, novelty)  # noqa: F821
