# Stage 2: GPAW plane-wave relaxation of cell and positions, one MPI job per structure.


rule relax:
    input:
        # The ML-relaxed geometry with ml.prerelax (see rules/ml.smk), else the generated CIF.
        cif=dft_start_cif,
    output:
        record=f"{OUT}/dft/{{sid}}/relax.json",
    params:
        settings=dft_settings_json,
        relaxed_cif=lambda wildcards: f"{OUT}/dft/{wildcards.sid}/relaxed.cif",
        workdir=lambda wildcards: f"{OUT}/dft/{wildcards.sid}",
        gpaw_python=GPAW_PYTHON,
    log:
        f"{OUT}/logs/relax/{{sid}}.log",
    threads: mpi_tasks
    resources:
        tasks=mpi_tasks,
        mpi=MPIEXEC,
        runtime=runtime_min,
        mem_mb_per_cpu=mem_mb_per_task,
    shell:
        "OMP_NUM_THREADS=1 {resources.mpi} -n {resources.tasks} {params.gpaw_python}"
        " -m dftscreen.relax --structure-id {wildcards.sid} --cif {input.cif:q}"
        " --settings {params.settings:q} --out-json {output.record}"
        " --out-cif {params.relaxed_cif} --workdir {params.workdir} > {log} 2>&1"
