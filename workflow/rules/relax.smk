# Stage 2: GPAW plane-wave relaxation of cell and positions, one MPI job per structure.


rule relax:
    input:
        # The ML-relaxed geometry with ml.prerelax (see rules/ml.smk), else the generated CIF.
        cif=dft_start_cif,
    output:
        record=LAYOUT.relax_record("{sid}"),
    log:
        LAYOUT.log("relax", "{sid}"),
    threads: mpi_tasks
    resources:
        tasks=mpi_tasks,
        mpi=gpaw_launcher,
        runtime=runtime_min,
        mem_mb_per_cpu=mem_mb_per_task,
    params:
        settings=dft_settings_json,
        # A param, not an output: a relaxation that fails still writes relax.json (with
        # the reason) but no relaxed.cif. As an output, the missing CIF would make Snakemake
        # call the job failed and delete the record, losing the reason; relax.json is the
        # one file that says "finished", and the CIF is written before it.
        relaxed_cif=lambda wildcards: LAYOUT.relaxed_cif(wildcards.sid),
        workdir=lambda wildcards: LAYOUT.structure_dir(wildcards.sid),
        gpaw_python=GPAW_PYTHON,
    shell:
        "OMP_NUM_THREADS=1 {resources.mpi} -n {resources.tasks} {params.gpaw_python}"
        " -m dftscreen.relax --structure-id {wildcards.sid} --cif {input.cif:q}"
        " --settings {params.settings:q} --out-json {output.record:q}"
        " --out-cif {params.relaxed_cif:q} --workdir {params.workdir:q} > {log:q} 2>&1"
