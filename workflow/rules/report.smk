# Stage 5: the HTML report (funnel, plots, every structure with its verdict, cost, provenance).
# Each output is also marked for Snakemake's own report: `snakemake --report report.zip`.


rule report:
    input:
        table=rules.aggregate.output.parquet,
        summary=rules.aggregate.output.summary,
        cohorts=rules.aggregate.output.cohorts_json,
    output:
        html=report(LAYOUT.report_file("index.html"), caption="../report/index.rst", category="Report"),
        figures=[
            report(LAYOUT.report_file(name), caption=f"../report/{REPORT_CAPTIONS[name]}", category="Figures")
            for name in REPORT_FIGURES
        ],
    log:
        LAYOUT.log("report"),
    localrule: True
    params:
        out_dir=lambda wildcards: OUT,
        report_dir=lambda wildcards: LAYOUT.report_dir,
        settings=global_settings_json,
        targets=config["targets"],
        stable_threshold_eV_per_atom=STABILITY["stable_threshold_eV_per_atom"],
        # With config cohorts: its ordered factors (a response curve each); None: no cohort figures.
        cohort_ordered=REPORT_COHORT_ORDERED,
    script:
        "../scripts/report.py"
