# Stage 2: GPAW plane-wave relaxation of cell and positions, one MPI job per structure.


rule relax:
    input:
        cif=input_cif,
    output:
        record=f"{OUT}/dft/{{sid}}/relax.json",
    params:
        settings=DFT_SETTINGS_JSON,
        relaxed_cif=lambda wildcards: f"{OUT}/dft/{wildcards.sid}/relaxed.cif",
        workdir=lambda wildcards: f"{OUT}/dft/{wildcards.sid}",
        gpaw_python=GPAW_PYTHON,
    log:
        f"{OUT}/logs/relax/{{sid}}.log",
    threads: DFT["mpi_tasks"]
    resources:
        tasks=DFT["mpi_tasks"],
        mpi="mpiexec",
        runtime=DFT["runtime_min"],
        mem_mb_per_cpu=DFT["mem_mb_per_task"],
    shell:
        "OMP_NUM_THREADS=1 {resources.mpi} -n {resources.tasks} {params.gpaw_python}"
        " -m dftscreen.relax --structure-id {wildcards.sid} --cif {input.cif:q}"
        " --settings {params.settings:q} --out-json {output.record}"
        " --out-cif {params.relaxed_cif} --workdir {params.workdir} > {log} 2>&1"
