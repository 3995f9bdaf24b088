# Stage 1b: judge the unique dft_ready structures against known materials (one job, like
# check): novelty by StructureMatcher, SMACT validity, and the known phases near the
# known hull of every candidate's chemical system. A checkpoint: the phase relaxations
# that follow exist only for the phases it chose (known/competing_phases.json).


checkpoint compare_known:
    input:
        checks=rules.check.output.table,
        valid_ids=rules.check.output.valid_ids,
        cifs=dft_input_cifs,
        known=known_source_files,
        ml_energies=ml_known_phase_energies,
    output:
        novelty=LAYOUT.novelty_table,
        phases=LAYOUT.competing_phases,
    log:
        LAYOUT.log("compare_known"),
    # Ahead of the DFT jobs (properties and packs have 10): a short job whose table the
    # hull and the novelty columns of every row need.
    priority: 30
    threads: config["check"]["workers"]
    resources:
        runtime=60,
    params:
        known=KNOWN,
        match=config["check"]["dedupe"],
        choose_phases=PLAN.competing_phases_wanted,
        library_folder=LIBRARY.folder,
        known_index_dir=LIBRARY.known_index_dir,
        settings=global_settings_json,
    script:
        "../scripts/compare_known.py"


# Stage 3b: is the DFT-relaxed structure a known one? A generated crystal may relax into a
# known phase; S.U.N. rates count the relaxed structure (as MatterGen does), while the
# generated structure's novelty (compare_known) measures memorisation. Only with a database.
rule compare_known_relaxed:
    input:
        relax=all_relax_records,
        packs=all_pack_records,
        known=known_database_files,
    output:
        novelty=LAYOUT.relaxed_novelty_table,
    log:
        LAYOUT.log("compare_known_relaxed"),
    threads: config["check"]["workers"]
    resources:
        runtime=60,
    params:
        known=KNOWN,
        match=config["check"]["dedupe"],
        known_index_dir=LIBRARY.known_index_dir,
        # The same order as dft_relax_record_paths (both read the ids after the checkpoints).
        structure_ids=lambda wildcards: dft_structure_ids(),
        relax_records=dft_relax_record_paths,
    script:
        "../scripts/compare_known_relaxed.py"


# A chosen known phase, relaxed like any structure with the run's global settings; its
# result lives in the reference library, so no later run with these settings redoes it.
use rule relax as relax_competing_phase with:
    input:
        cif=LIBRARY.phase_start_cif("{sid}"),
    output:
        record=LIBRARY.phase_record("{sid}"),
    log:
        LAYOUT.known_phase_log("{sid}"),
    # Every energy above the hull needs them.
    priority: 20
    threads: tasks_for(competing_phase_n_atoms)
    resources:
        tasks=tasks_for(competing_phase_n_atoms),
        mpi=gpaw_launcher,
        runtime=runtime_for(competing_phase_n_atoms),
        mem_mb_per_cpu=mem_for(competing_phase_n_atoms),
    params:
        settings=global_settings_json,
        relaxed_cif=lambda wildcards: LIBRARY.phase_relaxed_cif(wildcards.sid),
        workdir=lambda wildcards: LIBRARY.phase_dir(wildcards.sid),
        gpaw_python=GPAW_PYTHON,
