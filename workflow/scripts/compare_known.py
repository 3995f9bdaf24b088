"""Thin glue: novelty, SMACT validity and competing-phase choice (Snakemake `script:`).

Reads each known set once. Novelty is judged for every structure that parsed (the ones not
going to DFT are read from the run's inputs as the check read them); competing phases only
for the DFT structures' chemical systems. Chosen phases get their structure written to the reference
library as start.cif (only when missing or different, so a finished relaxation is not redone).
Logging goes to the job's log; a known set that cannot be used ends the job with one sentence there.
"""

import json
from pathlib import Path

from dftscreen.compare_known import compare_with_known, job_log, read_other_parsed
from dftscreen.dedupe import MatchSettings
from dftscreen.io import atomic_write_json, read_json

inputs = snakemake.input  # noqa: F821
params = snakemake.params  # noqa: F821
with job_log("compare_known", snakemake.log[0]) as log:  # noqa: F821
    valid_ids = [line.strip() for line in Path(inputs.valid_ids).read_text().splitlines() if line.strip()]
    ml_energies = read_json(inputs.ml_energies[0]) if inputs.ml_energies else None
    match = MatchSettings.from_config(params.match)
    checks = read_json(inputs.checks)
    novelty, phases = compare_with_known(
        checks=checks,
        dft_cifs=dict(zip(valid_ids, inputs.cifs)),
        known_config=dict(params.known),
        match=match,
        choose_phases=params.choose_phases,
        library_folder=params.library_folder,
        settings=json.loads(params.settings),
        ml_energies_per_atom=ml_energies,
        workers=snakemake.threads,  # noqa: F821
        known_index_dir=params.known_index_dir,
        log=log,
        other_structures=read_other_parsed(checks, set(valid_ids), dict(snakemake.config), log),  # noqa: F821
    )
    atomic_write_json(snakemake.output.novelty, novelty)  # noqa: F821
    atomic_write_json(snakemake.output.phases, phases)  # noqa: F821
