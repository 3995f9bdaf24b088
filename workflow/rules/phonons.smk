# Stage 5: dynamical stability from finite-displacement phonons (dftscreen.phonons).
# ML phonons: one job per ML batch (the model loaded once), on every ML-relaxed structure.
# DFT phonons: after every DFT job, a local checkpoint chooses the structures (phonons.dft,
# dftscreen.phonon_results) and sizes their supercells with the size gate; then one GPAW job per
# structure, whose displaced supercells are each a record of their own (a rerun reuses them);
# with dft.structures_per_pack one job per pack of them instead (dft_phonon_pack, dftscreen.dft_pack).
# The aggregate reads both. Input functions: rules/common_late.smk.


rule ml_phonon_batch:
    input:
        ml=LAYOUT.ml_batch_record("{batch}"),
    output:
        record=LAYOUT.ml_phonon_batch_record("{batch}"),
    log:
        LAYOUT.log("ml", "phonons_{batch}"),
    wildcard_constraints:
        batch=r"\d+",
    threads: ML["threads"]
    resources:
        runtime=ml_batch_runtime,
        mem_mb=4000,
    params:
        ids=ml_batch_ids,
        ml=ML_RESULT_SETTINGS,
        phonons=PHONON_SETTINGS,
        out_dir=lambda wildcards: OUT,
    script:
        "../scripts/ml_phonons.py"


checkpoint phonon_candidates:
    input:
        unpack(table_inputs),
    output:
        plan=LAYOUT.phonon_candidates,
    log:
        LAYOUT.log("phonons", "candidates"),
    localrule: True
    params:
        **TABLE_PARAMS,
        mode=PHONON_DFT_MODE,
        phonons=PHONON_SETTINGS,
        gate=lambda wildcards: PLAN.size_gate_params,
    script:
        "../scripts/phonon_candidates.py"


rule dft_phonons:
    input:
        # Not the plan: a plan rewritten for new structures must not rerun finished phonons. The
        # jobs are asked for only after the checkpoint ran (dft_phonon_records).
        relax=lambda wildcards: LAYOUT.relax_record(wildcards.sid),
    output:
        record=LAYOUT.phonon_record("{sid}"),
    log:
        LAYOUT.phonon_log("{sid}"),
    threads: phonon_tasks
    resources:
        tasks=phonon_tasks,
        mpi=gpaw_launcher,
        runtime=phonon_runtime_min,
        mem_mb_per_cpu=phonon_mem_mb_per_task,
    params:
        settings=dft_settings_json,
        phonons=json.dumps(PHONON_SETTINGS, sort_keys=True),
        relaxed_cif=lambda wildcards: LAYOUT.relaxed_cif(wildcards.sid),
        workdir=lambda wildcards: LAYOUT.structure_dir(wildcards.sid),
        gpaw_python=GPAW_PYTHON,
    shell:
        "OMP_NUM_THREADS=1 {resources.mpi} -n {resources.tasks} {params.gpaw_python}"
        " -m dftscreen.phonons --structure-id {wildcards.sid} --relaxed-cif {params.relaxed_cif:q}"
        " --relax-json {input.relax:q} --settings {params.settings:q}"
        " --phonon-settings {params.phonons:q} --workdir {params.workdir:q} --out-json {output.record:q}"
        " > {log:q} 2>&1"


# With dft.structures_per_pack >= 1: one job per pack of the chosen structures runs their
# `python -m dftscreen.phonons` side by side, as dft_phonons would one by one (same records).
rule dft_phonon_pack:
    input:
        # Not the plan, as dft_phonons; the packs are asked for only after the checkpoint ran.
        relax=phonon_pack_relax_records,
    output:
        record=LAYOUT.phonon_pack_record("{pack}"),
    log:
        LAYOUT.phonon_pack_log("{pack}"),
    wildcard_constraints:
        pack=PACK_NAME_PATTERN,
    threads: phonon_pack_tasks
    resources:
        tasks=phonon_pack_tasks,
        # The pack starts its GPAW runs itself (srun steps inside SLURM), as dft_pack.
        mpi="srun",
        runtime=phonon_pack_runtime_min,
        mem_mb_per_cpu=phonon_pack_mem_mb_per_task,
        attempt_number=lambda wildcards, attempt: attempt,
    params:
        plan=phonon_pack_plan_json,
        settings=global_settings_json,
        phonons=json.dumps(PHONON_SETTINGS, sort_keys=True),
        out_dir=lambda wildcards: OUT,
        python=shlex.quote(sys.executable),
    shell:
        "OMP_NUM_THREADS=1 {params.python} -m dftscreen.dft_pack --pack {wildcards.pack}"
        " --plan {params.plan:q} --settings {params.settings:q} --phonon-settings {params.phonons:q}"
        " --out-dir {params.out_dir:q} --out-json {output.record:q} --budget {threads}"
        " --attempt {resources.attempt_number} > {log:q} 2>&1"
