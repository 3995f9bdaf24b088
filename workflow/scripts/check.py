"""Thin glue: check and deduplicate every input CIF (Snakemake `script:`).

Table rows sent to DFT get their CIF text written to `<output_dir>/inputs/<id>.cif`
(rewritten only when it changed), the file the relax rule reads for them. The log
holds counts and the most common reasons; one line per file only with
check.log_each_file (5,000 files made 190 kB of log).
"""

import logging
from collections import Counter
from pathlib import Path

from dftscreen.check import CheckSettings, crystallm_failure_summary, with_size_gate
from dftscreen.check_batch import check_all, check_and_deduplicate
from dftscreen.dedupe import MatchSettings
from dftscreen.inputs import discover_inputs, needs_workflow_copy, no_input_message, workflow_paths, write_input_copy
from dftscreen.io import atomic_write_json, atomic_write_text
from dftscreen.layout import ResultsLayout
from dftscreen.settings import paw_elements
from dftscreen.size_gate import REAL_INPUT_NOTE, keeps_cell_only_estimates

check_config = dict(snakemake.params.check)  # noqa: F821
each_file = bool(check_config.get("log_each_file", False))
logging.basicConfig(filename=snakemake.log[0], level=logging.DEBUG if each_file else logging.INFO)  # noqa: F821
dedupe_config = dict(check_config.get("dedupe", {}))
# The size gate estimates from the DFT's real inputs, but where packs started with the cell-only
# estimate, which their commands carry (dftscreen.size_gate.keeps_cell_only_estimates).
layout = ResultsLayout.of(snakemake.params.output_dir)  # noqa: F821
cell_only = keeps_cell_only_estimates(layout)
settings = with_size_gate(CheckSettings.from_config(check_config), snakemake.params.size_gate, cell_only=cell_only)  # noqa: F821
if cell_only:
    logging.info("size gate: the cell-only estimate, which the DFT packs that started here carry")
workers = min(int(check_config.get("workers", 1)), snakemake.threads)  # noqa: F821
# The run's own folders, reference library and known sets are never inputs (dftscreen.inputs.workflow_paths).
own = workflow_paths(snakemake.config)  # noqa: F821
items = discover_inputs(dict(snakemake.params.inputs), snakemake.params.output_dir, own)  # noqa: F821
if not items:
    logging.warning(
        "%s; the results table will be empty",
        no_input_message(dict(snakemake.params.inputs), snakemake.params.output_dir, own),  # noqa: F821
    )
elements = paw_elements(snakemake.params.xc)  # noqa: F821
if dedupe_config.get("enabled", True):
    match = MatchSettings.from_config(dedupe_config)
    results = check_and_deduplicate(items, settings, match, elements, workers=workers, isolate=True)
else:
    results = check_all(items, available_elements=elements, settings=settings, workers=workers, isolate=True)
valid = [r.structure_id for r in results if r.valid]
for r in results:
    if r.id_note:
        logging.debug("%s: %s", r.source_file, r.id_note)
    if not r.valid:
        logging.debug("%s %s: %s", r.status, r.structure_id, r.reason)
logging.info("statuses: %s", dict(Counter(r.status or "to DFT" for r in results)))
logging.info(
    "ids made from changed or shortened names: %d (see the id_note column)", sum(bool(r.id_note) for r in results)
)
for reason, count in Counter(r.reason.split(";")[0] for r in results if not r.valid).most_common(10):
    logging.info("%6d x %s", count, reason)
logging.info(
    "%d files, %d crystallm_valid, %d dft_ready, %d unique dft_ready sent to DFT",
    len(results),
    sum(r.crystallm_valid for r in results),
    sum(r.dft_ready for r in results),
    len(valid),
)
for line in crystallm_failure_summary(results):  # why CrystaLLM's metric failed (e.g. all declare P1)
    logging.info("%s", line)
by_id = {item.structure_id: item for item in items}
for sid in valid:
    # A table row, or a file whose path Snakemake cannot take (`<unk>`, `{x}`): DFT reads a copy.
    if needs_workflow_copy(by_id[sid]):
        write_input_copy(by_id[sid], snakemake.params.inputs_dir)  # noqa: F821
if settings.size_gate is not None and not cell_only and not Path(layout.size_estimate_note).is_file():
    atomic_write_text(layout.size_estimate_note, REAL_INPUT_NOTE)
atomic_write_json(snakemake.output.table, [r.to_dict() for r in results])  # noqa: F821
atomic_write_text(snakemake.output.valid_ids, "".join(f"{sid}\n" for sid in valid))  # noqa: F821
