# Stage 1: read, check and deduplicate every input CIF in one batched job (using
# check.workers processes inside it). A checkpoint: the DFT jobs that follow exist
# only for the unique dft_ready structures it lists in valid_ids.txt.


checkpoint check:
    input:
        cifs=[str(item.path) for item in INPUTS.values()],
    output:
        table=f"{OUT}/check/checks.json",
        valid_ids=f"{OUT}/check/valid_ids.txt",
    params:
        cif_dir=config["input"]["cif_dir"],
        check=config["check"],
        xc=DFT_SETTINGS["gpaw"]["xc"],
    log:
        f"{OUT}/logs/check.log",
    threads: config["check"]["workers"]
    resources:
        runtime=60,
    script:
        "../scripts/check.py"
