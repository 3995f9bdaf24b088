"""Thin glue: run dftscreen.check over every input CIF (Snakemake `script:`)."""

import logging

from dftscreen.check import check_all
from dftscreen.inputs import discover_cifs
from dftscreen.io import atomic_write_json, atomic_write_text
from dftscreen.settings import paw_elements

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
items = discover_cifs(snakemake.params.cif_dir)  # noqa: F821
results = check_all(
    items,
    min_distance_A=snakemake.params.min_distance_A,  # noqa: F821
    symprec=snakemake.params.symprec_A,  # noqa: F821
    available_elements=paw_elements(snakemake.params.xc),  # noqa: F821
)
valid = [r.structure_id for r in results if r.valid]
for r in results:
    if r.id_note:
        logging.warning("%s: %s", r.source_file, r.id_note)
    if not r.valid:
        logging.info("invalid %s: %s", r.structure_id, r.reason)
logging.info("%d of %d structures valid", len(valid), len(results))
atomic_write_json(snakemake.output.table, [r.to_dict() for r in results])  # noqa: F821
atomic_write_text(snakemake.output.valid_ids, "".join(f"{sid}\n" for sid in valid))  # noqa: F821
