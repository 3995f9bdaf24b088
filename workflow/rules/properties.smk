# Stage 3: single point on the relaxed structure: energy, band gap, magnetic moment.


rule properties:
    input:
        relax=f"{OUT}/dft/{{sid}}/relax.json",
    output:
        record=f"{OUT}/dft/{{sid}}/properties.json",
    params:
        settings=DFT_SETTINGS_JSON,
        workdir=lambda wildcards: f"{OUT}/dft/{wildcards.sid}",
        gpaw_python=GPAW_PYTHON,
    log:
        f"{OUT}/logs/properties/{{sid}}.log",
    threads: DFT["mpi_tasks"]
    resources:
        tasks=DFT["mpi_tasks"],
        mpi="mpiexec",
        runtime=DFT["runtime_min"],
        mem_mb_per_cpu=DFT["mem_mb_per_task"],
    shell:
        "OMP_NUM_THREADS=1 {resources.mpi} -n {resources.tasks} {params.gpaw_python}"
        " -m dftscreen.properties --structure-id {wildcards.sid} --relax-json {input.relax}"
        " --settings {params.settings:q} --out-json {output.record}"
        " --workdir {params.workdir} > {log} 2>&1"
