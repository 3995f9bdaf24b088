# Stage 5: the HTML report (funnel, plots, every structure with its verdict, cost, provenance).
# Each output is also marked for Snakemake's own report: `snakemake --report report.zip`.


rule report:
    input:
        table=rules.aggregate.output.parquet,
        summary=rules.aggregate.output.summary,
    output:
        html=report(f"{OUT}/report/index.html", caption="../report/index.rst", category="Report"),
        figures=[
            report(f"{OUT}/report/{name}", caption=f"../report/{REPORT_CAPTIONS[name]}", category="Figures")
            for name in REPORT_FIGURES
        ],
    params:
        out_dir=OUT,
        report_dir=f"{OUT}/report",
        settings=global_settings_json,
        targets=config["targets"],
        stable_threshold_eV_per_atom=STABILITY["stable_threshold_eV_per_atom"],
    log:
        f"{OUT}/logs/report.log",
    localrule: True
    script:
        "../scripts/report.py"
