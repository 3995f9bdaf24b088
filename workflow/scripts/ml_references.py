"""Thin glue: ML-relax the elemental references, reference phases and chosen known phases (Snakemake `script:`).

The known phases are those compare_known chose that DFT relaxes too (the same function picks
them: dftscreen.plan.RunPlan.competing_phase_keys), so the ML and the DFT hull hold the same phases.
"""

import logging

from dftscreen.io import read_json
from dftscreen.layout import ResultsLayout
from dftscreen.ml import MLSettings, load_calculator, relax_references
from dftscreen.plan import RunPlan

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
settings = MLSettings.from_config(snakemake.params.ml)  # noqa: F821
device = snakemake.config["ml"]["device"]  # noqa: F821
known_phases = {}
if snakemake.input.chosen_phases:  # noqa: F821
    plan = RunPlan(dict(snakemake.config))  # noqa: F821
    chosen = read_json(snakemake.input.chosen_phases[0])  # noqa: F821
    entry_ids = {phase["phase_key"]: phase["entry_id"] for phase in chosen["phases"]}
    known_phases = {
        key: {"start_cif": plan.library.phase_start_cif(key), "entry_id": entry_ids[key]}
        for key in plan.competing_phase_keys(chosen)
    }
records = relax_references(
    snakemake.params.elements,  # noqa: F821
    snakemake.params.element_cifs,  # noqa: F821
    snakemake.params.phases,  # noqa: F821
    ResultsLayout.of(snakemake.params.out_dir),  # noqa: F821
    settings,
    lambda: load_calculator(settings.model, snakemake.threads, device),  # noqa: F821
    out_json=snakemake.output.record,  # noqa: F821
    known_phases=known_phases,
    library=plan.library if known_phases else None,
)
for record in records["elements"] + records["phases"] + records["known_phases"]:
    logging.info("%s: %s %s", record.get("element") or record.get("structure_id"), record["status"],
                 record.get("reason", ""))
