# Stage 1: read, check and deduplicate every input CIF in one batched job (using
# check.workers processes inside it). A checkpoint: the DFT jobs that follow exist
# only for the unique dft_ready structures it lists in valid_ids.txt. Rows of a table
# input that go to DFT get their CIF written to {OUT}/inputs/{sid}.cif (see input_cif).


# The check's input: size, mtime and path of every input (dftscreen.guards.input_manifest),
# written by this job, not while Snakemake plans. A new digest reruns it, and the check after
# it. Results folders from before this rule have no record of its params: for them the
# default target asks for the flag it declares when the inputs differ from the manifest.
rule input_manifest:
    output:
        **INPUT_MANIFEST_FLAG,
        manifest=INPUT_MANIFEST,
    log:
        LAYOUT.input_manifest_log,
    localrule: True
    params:
        digest=PLAN.input_manifest_digest,
    run:
        PLAN.write_input_manifest(output.manifest, output.get("changed"), log[0])


checkpoint check:
    input:
        # Size, time and path of every CIF file and of the table (see INPUT_MANIFEST).
        manifest=INPUT_MANIFEST,
    output:
        table=LAYOUT.checks_table,
        valid_ids=LAYOUT.valid_ids,
    log:
        LAYOUT.log("check"),
    threads: config["check"]["workers"]
    resources:
        runtime=60,
    params:
        inputs=config["input"],
        output_dir=lambda wildcards: OUT,
        inputs_dir=LAYOUT.inputs_dir,
        size_gate=size_gate_params(),
        check=config["check"],
        xc=DFT_SETTINGS["gpaw"]["xc"],
    script:
        "../scripts/check.py"
