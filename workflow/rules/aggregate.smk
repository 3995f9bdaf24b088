# Stage 4: one results table, one row per input file, CSV and Parquet.


rule aggregate:
    input:
        checks=rules.check.output.table,
        targets=target_file,
        cohort_manifest=cohort_manifest,
        relax=all_relax_records,
        properties=all_properties_records,
        packs=all_pack_records,
        elements=all_element_records,
        phases=all_phase_records,
        ml=ml_screen_output,
        novelty=LAYOUT.novelty_table,
        relaxed_novelty=relaxed_novelty_input,
        chosen_phases=LAYOUT.competing_phases,
        known_phases=all_competing_phase_records,
    output:
        csv=report(LAYOUT.results_csv, caption="../report/results.rst", category="Results"),
        parquet=LAYOUT.results_parquet,
        summary=report(LAYOUT.summary, caption="../report/summary.rst", category="Results"),
        cohorts_csv=report(LAYOUT.cohorts_csv, caption="../report/cohorts.rst", category="Results"),
        cohorts_json=LAYOUT.cohorts_json,
    log:
        LAYOUT.log("aggregate"),
    localrule: True
    params:
        dft_dir=LAYOUT.dft_dir,
        with_formation_energies=STABILITY["elemental_references"],
        stable_threshold_eV_per_atom=STABILITY["stable_threshold_eV_per_atom"],
        targets=config["targets"],
        # For provenance (versions, settings hash) of the rows and summary.json.
        settings=global_settings_json,
        out_dir=lambda wildcards: OUT,
        ml_prerelax=ML["enabled"] and ML["prerelax"],
        # Each input's cohort (dftscreen.cohorts): cohort and cohort_<factor> columns, cohorts.csv.
        cohorts=COHORTS,
        # With the ML screen audited, rates are also weighted back (dftscreen.cohort_table.audit_rates).
        audit_fraction=SCREEN_AUDIT_FRACTION,
        # The DFT budget's sample, drawn again to mark what it left out (dftscreen.table.add_budget_columns).
        dft_budget={key: DFT[key] for key in ("max_structures_per_cohort", "budget_seed")},
    script:
        "../scripts/aggregate.py"
