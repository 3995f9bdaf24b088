# Stage 4: one results table, one row per input file, CSV and Parquet.


rule aggregate:
    input:
        checks=rules.check.output.table,
        relax=all_relax_records,
        properties=all_properties_records,
        elements=all_element_records,
        phases=all_phase_records,
    output:
        csv=f"{OUT}/results.csv",
        parquet=f"{OUT}/results.parquet",
    params:
        dft_dir=f"{OUT}/dft",
        with_formation_energies=STABILITY["elemental_references"],
    log:
        f"{OUT}/logs/aggregate.log",
    localrule: True
    script:
        "../scripts/aggregate.py"
