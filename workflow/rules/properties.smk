# Stage 3: single point on the relaxed structure: energy, band gap, magnetic moment.


rule properties:
    input:
        relax=LAYOUT.relax_record("{sid}"),
    output:
        record=LAYOUT.properties_record("{sid}"),
    log:
        LAYOUT.log("properties", "{sid}"),
    # Before any new relaxation: a structure's row is finished as soon as it can
    # be, so an interrupted or time-limited run leaves whole rows, not half ones.
    priority: 10
    threads: mpi_tasks
    resources:
        tasks=mpi_tasks,
        mpi=gpaw_launcher,
        runtime=runtime_min,
        mem_mb_per_cpu=mem_mb_per_task,
    params:
        settings=dft_settings_json,
        workdir=lambda wildcards: LAYOUT.structure_dir(wildcards.sid),
        gpaw_python=GPAW_PYTHON,
    shell:
        "OMP_NUM_THREADS=1 {resources.mpi} -n {resources.tasks} {params.gpaw_python}"
        " -m dftscreen.properties --structure-id {wildcards.sid} --relax-json {input.relax:q}"
        " --settings {params.settings:q} --out-json {output.record:q}"
        " --workdir {params.workdir:q} > {log:q} 2>&1"
