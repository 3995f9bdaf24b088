# Stage 4: one results table, one row per input file, CSV and Parquet.


rule aggregate:
    input:
        checks=rules.check.output.table,
        targets=target_file,
        relax=all_relax_records,
        properties=all_properties_records,
        elements=all_element_records,
        phases=all_phase_records,
        ml=ml_screen_output,
    output:
        csv=f"{OUT}/results.csv",
        parquet=f"{OUT}/results.parquet",
        summary=f"{OUT}/summary.json",
    params:
        dft_dir=f"{OUT}/dft",
        with_formation_energies=STABILITY["elemental_references"],
        stable_threshold_eV_per_atom=STABILITY["stable_threshold_eV_per_atom"],
        targets=config["targets"],
        out_dir=OUT,
        ml_prerelax=ML["enabled"] and ML["prerelax"],
    log:
        f"{OUT}/logs/aggregate.log",
    localrule: True
    script:
        "../scripts/aggregate.py"
