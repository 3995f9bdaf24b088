# Stage 4: one results table, one row per input file, CSV and Parquet.


rule aggregate:
    input:
        checks=rules.check.output.table,
        targets=target_file,
        relax=all_relax_records,
        properties=all_properties_records,
        elements=all_element_records,
        phases=all_phase_records,
        novelty=f"{OUT}/known/novelty.json",
        chosen_phases=f"{OUT}/known/competing_phases.json",
        known_phases=all_competing_phase_records,
    output:
        csv=f"{OUT}/results.csv",
        parquet=f"{OUT}/results.parquet",
        summary=f"{OUT}/summary.json",
    params:
        dft_dir=f"{OUT}/dft",
        with_formation_energies=STABILITY["elemental_references"],
        stable_threshold_eV_per_atom=STABILITY["stable_threshold_eV_per_atom"],
        targets=config["targets"],
    log:
        f"{OUT}/logs/aggregate.log",
    localrule: True
    script:
        "../scripts/aggregate.py"
