# Stage 3b: references for formation energies and the convex hull, with the run's DFT preset.


rule element_reference:
    input:
        cif=element_reference_cif,
    output:
        # In the reference library, keyed by DFT settings and by the structure standing for
        # the element, so every run sharing the library computes each element once.
        record=LIBRARY.element_record("{element}", "{ekey}"),
    log:
        LAYOUT.element_reference_log("{element}", "{ekey}"),
    # Every formation energy and hull needs them, so they go first.
    priority: 20
    # Scaled with the reference cell like any structure (1 atom for Na, 12 for α-B, 32 for α-S),
    # and enlarged by the size gate's estimate like a generated structure's.
    threads: tasks_for(element_n_atoms)
    resources:
        tasks=tasks_for(element_n_atoms),
        mpi=gpaw_launcher,
        runtime=runtime_for(element_n_atoms, estimated=True),
        mem_mb_per_cpu=mem_for(element_n_atoms, estimated=True),
    params:
        settings=global_settings_json,
        relaxed_cif=lambda wildcards: LIBRARY.element_relaxed_cif(wildcards.element, wildcards.ekey),
        workdir=lambda wildcards: LIBRARY.element_dir(wildcards.element, wildcards.ekey),
        gpaw_python=GPAW_PYTHON,
        cif_option=element_reference_cif_option,
        candidate_option=element_candidate_option,
    shell:
        "OMP_NUM_THREADS=1 {resources.mpi} -n {resources.tasks} {params.gpaw_python}"
        " -m dftscreen.references --element {wildcards.element} --structure-id element_{wildcards.element}"
        " {params.cif_option} {params.candidate_option}"
        " --settings {params.settings:q} --out-json {output.record:q}"
        " --out-cif {params.relaxed_cif:q} --workdir {params.workdir:q} > {log:q} 2>&1"


use rule relax as relax_reference_phase with:
    input:
        cif=reference_phase_cif,
    output:
        record=LAYOUT.phase_record("{sid}"),
    log:
        LAYOUT.reference_phase_log("{sid}"),
    # Every energy above the hull needs them.
    priority: 20
    # Sized by the phase's own CIF (the generated structures' table does not list it).
    threads: tasks_for(phase_n_atoms)
    resources:
        tasks=tasks_for(phase_n_atoms),
        mpi=gpaw_launcher,
        runtime=runtime_for(phase_n_atoms),
        mem_mb_per_cpu=mem_for(phase_n_atoms),
    params:
        settings=global_settings_json,
        relaxed_cif=lambda wildcards: LAYOUT.phase_relaxed_cif(wildcards.sid),
        workdir=lambda wildcards: LAYOUT.phase_dir(wildcards.sid),
        gpaw_python=GPAW_PYTHON,
