# Stage 1b: machine-learned pre-relaxation, ML energies and pre-screen (src/dftscreen/ml.py).
# A few batched jobs (the model is loaded once per job, ml.batch_size structures each), one job
# for the ML-relaxed references (elements, reference phases and the known phases compare_known
# chose, kept in the reference library per model), and a local checkpoint that builds the ML hull and lists the
# ids that go on to DFT (ml/dft_ids.txt). The DFT relaxation reads dft_start_cif.
# Its input functions live in common.smk with the others.


rule ml_batch:
    input:
        checks=LAYOUT.checks_table,
        cifs=ml_batch_cifs,
    output:
        record=LAYOUT.ml_batch_record("{batch}"),
    log:
        LAYOUT.log("ml", "batch_{batch}"),
    wildcard_constraints:
        batch=r"\d+",
    threads: ML["threads"]
    resources:
        runtime=ml_batch_runtime,
        mem_mb=4000,
    params:
        # The ids are a param so that a batch whose members changed reruns (and reuses what it can).
        ids=ml_batch_ids,
        # Only what changes the results: a new screen threshold or batch size reruns no ML job.
        ml=ML_RESULT_SETTINGS,
        out_dir=lambda wildcards: OUT,
    script:
        "../scripts/ml_batch.py"


rule ml_references:
    input:
        checks=LAYOUT.checks_table,
        element_cifs=lambda wildcards: sorted(STABILITY["elemental_reference_cifs"].values()),
        phase_cifs=lambda wildcards: [str(item.path) for _, item in sorted(REFERENCE_PHASES.items())],
        # The known phases compare_known chose (their start CIFs in the reference library), read by
        # the job: a plain input, no checkpoint .get() (see checked_valid_ids in common.smk).
        chosen_phases=lambda wildcards: [LAYOUT.competing_phases] if PLAN.competing_phases_wanted else [],
    output:
        record=LAYOUT.ml_references,
    log:
        LAYOUT.log("ml", "references"),
    threads: ML["threads"]
    resources:
        runtime=30,
        mem_mb=4000,
    params:
        elements=lambda wildcards: ml_reference_elements(),
        element_cifs=STABILITY["elemental_reference_cifs"],
        phases=lambda wildcards: {sid: str(item.path) for sid, item in sorted(REFERENCE_PHASES.items())},
        ml=ML_RESULT_SETTINGS,
        out_dir=lambda wildcards: OUT,
    script:
        "../scripts/ml_references.py"


checkpoint ml_screen:
    input:
        checks=LAYOUT.checks_table,
        batches=all_ml_batch_records,
        references=LAYOUT.ml_references,
    output:
        screen=LAYOUT.ml_screen,
        dft_ids=LAYOUT.ml_dft_ids,
    log:
        LAYOUT.log("ml", "screen"),
    localrule: True
    params:
        threshold=ML_SCREEN_THRESHOLD,
        # A seeded sample of the screened-out structures still goes to DFT (dftscreen.ml_hull.audit).
        audit_fraction=ML["audit_fraction"],
        audit_seed=ML["audit_seed"],
        ids=lambda wildcards: checked_valid_ids(),
        out_dir=lambda wildcards: OUT,
    script:
        "../scripts/ml_screen.py"
