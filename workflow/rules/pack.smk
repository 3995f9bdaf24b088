# Stages 2+3 in packs (dft.structures_per_pack >= 1): one job per pack of structures runs their
# relaxations and single points side by side (dftscreen.dft_pack), instead of a relax and a
# properties job per structure. The same GPAW programs write the same records and logs; the
# pack's own record lists which structures ran in which job. Input functions: common.smk.


rule dft_pack:
    input:
        cifs=pack_start_cifs,
    output:
        record=LAYOUT.pack_record("{pack}"),
    log:
        LAYOUT.pack_log("{pack}"),
    wildcard_constraints:
        pack=PACK_NAME_PATTERN,
    # Like properties: a pack's structures finish whole rows before new packs start.
    priority: 10
    threads: pack_tasks
    resources:
        tasks=pack_tasks,
        # The pack starts its GPAW runs itself (srun steps inside SLURM): the SLURM
        # executor must run the job's command as it is, not wrapped in an srun of its own.
        mpi="srun",
        runtime=pack_runtime_min,
        mem_mb_per_cpu=pack_mem_mb_per_task,
        attempt_number=lambda wildcards, attempt: attempt,
    params:
        plan=pack_plan_json,
        # The run's settings; a structure with dft.structure_overrides has its own in the plan.
        settings=global_settings_json,
        out_dir=lambda wildcards: OUT,
        python=shlex.quote(sys.executable),
    shell:
        "OMP_NUM_THREADS=1 {params.python} -m dftscreen.dft_pack --pack {wildcards.pack}"
        " --plan {params.plan:q} --settings {params.settings:q} --out-dir {params.out_dir:q}"
        " --out-json {output.record:q} --budget {threads} --attempt {resources.attempt_number}"
        " > {log:q} 2>&1"
