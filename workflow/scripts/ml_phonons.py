"""Thin glue: ML phonons of one ML batch's structures, loading the model once (Snakemake `script:`)."""

import logging
from pathlib import Path

from dftscreen.layout import ResultsLayout
from dftscreen.ml import MLSettings, load_calculator
from dftscreen.phonons import PhononSettings, run_ml_phonon_batch

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
layout = ResultsLayout.of(snakemake.params.out_dir)  # noqa: F821
ml_settings = MLSettings.from_config(snakemake.params.ml)  # noqa: F821
device = snakemake.config["ml"]["device"]  # noqa: F821
items = []
for sid in snakemake.params.ids:  # noqa: F821
    # The ML minimum, also when it was rejected as a DFT start (the phonons are the potential's own).
    geometry = next((p for p in (layout.ml_relaxed_cif(sid), layout.ml_rejected_cif(sid)) if Path(p).is_file()), None)
    if geometry is None:
        logging.info("%s: no ML-relaxed geometry (its ML relaxation failed): no ML phonons", sid)
    else:
        items.append((sid, geometry))
summary = run_ml_phonon_batch(
    items,
    layout,
    ml_settings,
    PhononSettings.from_config(snakemake.params.phonons),  # noqa: F821
    lambda: load_calculator(ml_settings.model, snakemake.threads, device),  # noqa: F821
    out_json=snakemake.output.record,  # noqa: F821
)
logging.info("computed %d, reused %d finished earlier", len(summary["computed"]), len(summary["reused"]))
