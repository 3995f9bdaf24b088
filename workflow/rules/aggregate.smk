# Stage 4: one results table, one row per input file, CSV and Parquet.
# The phonon checkpoint (rules/phonons.smk) builds the same table to choose its structures: both
# take table_inputs and TABLE_PARAMS (rules/common_late.smk).


rule aggregate:
    input:
        unpack(table_inputs),
        # ML phonon batches, the DFT phonon plan and records (rules/phonons.smk).
        phonons=phonon_outputs,
    output:
        csv=report(LAYOUT.results_csv, caption="../report/results.rst", category="Results"),
        parquet=LAYOUT.results_parquet,
        summary=report(LAYOUT.summary, caption="../report/summary.rst", category="Results"),
        cohorts_csv=report(LAYOUT.cohorts_csv, caption="../report/cohorts.rst", category="Results"),
        cohorts_json=LAYOUT.cohorts_json,
    log:
        LAYOUT.log("aggregate"),
    localrule: True
    params:
        **TABLE_PARAMS,
    script:
        "../scripts/aggregate.py"
