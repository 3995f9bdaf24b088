# Stage 1: parse and sanity-check every input CIF in one batched job. A checkpoint:
# the DFT jobs that follow exist only for the structures it passed.


checkpoint check:
    input:
        cifs=[str(item.path) for item in INPUTS.values()],
    output:
        table=f"{OUT}/check/checks.json",
        valid_ids=f"{OUT}/check/valid_ids.txt",
    params:
        cif_dir=config["input"]["cif_dir"],
        min_distance_A=config["check"]["min_distance_A"],
        symprec_A=config["check"]["symprec_A"],
        xc=DFT_SETTINGS["gpaw"]["xc"],
    log:
        f"{OUT}/logs/check.log",
    resources:
        runtime=60,
    script:
        "../scripts/check.py"
