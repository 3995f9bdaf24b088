# Stage 1b: machine-learned pre-relaxation, ML energies and pre-screen (src/dftscreen/ml.py).
# A few batched jobs (the model is loaded once per job, ml.batch_size structures each), one job
# for the ML-relaxed references, and a local checkpoint that builds the ML hull and lists the
# ids that go on to DFT (ml/dft_ids.txt). The DFT relaxation reads dft_start_cif.
import os
from types import SimpleNamespace

from dftscreen.layout import ResultsLayout
from dftscreen.ml import batch_index, dft_start_cif as _dft_start_cif, n_batches, screen_threshold

LAYOUT = ResultsLayout.of(OUT)
ML = config["ml"]
ML_SCREEN_THRESHOLD = screen_threshold(ML, DFT["preset"])
ML_RESULT_SETTINGS = {"model": ML["model"], "relax": ML["relax"]}


def checked_valid_ids():
    """The check checkpoint's valid ids, read from its file when it exists.

    Not through checkpoints.check.get() once the file is there: the ML jobs list the
    check table as a plain input, so Snakemake re-evaluates them when the check reruns,
    while a .get() here would chain two checkpoints (check, then ml_screen), and
    Snakemake 9 then never re-evaluates what depends on an already finished ml_screen:
    a rerun after the ML stage would report "Nothing to be done" with DFT pending.
    """
    if not os.path.exists(LAYOUT.valid_ids):
        checkpoints.check.get()  # raises until the check has run
    with open(LAYOUT.valid_ids) as handle:
        return [line.strip() for line in handle if line.strip()]


def checked_records():
    """The check table as {id: record} (read by path, see checked_valid_ids)."""
    if not os.path.exists(LAYOUT.checks_table):
        checkpoints.check.get()
    with open(LAYOUT.checks_table) as handle:
        return {r["structure_id"]: r for r in json.load(handle)}


def ml_batches():
    """Batch index -> ids, from the check checkpoint (the same split in every Snakemake process)."""
    ids = checked_valid_ids()
    count = n_batches(len(ids), ML["batch_size"])
    batches = {n: [] for n in range(count)}
    for sid in ids:
        batches[batch_index(sid, count)].append(sid)
    return batches


def ml_batch_ids(wildcards):
    return ml_batches()[int(wildcards.batch)]


def ml_batch_cifs(wildcards):
    return [input_cif(SimpleNamespace(sid=sid)) for sid in ml_batch_ids(wildcards)]


def ml_batch_runtime(wildcards, attempt):
    return int((10 + ML["runtime_min_per_structure"] * len(ml_batch_ids(wildcards))) * attempt)


def all_ml_batch_records(wildcards):
    if not ML["enabled"]:
        return []
    return expand(LAYOUT.ml_batch_record("{batch}"), batch=sorted(ml_batches()))


def ml_reference_elements():
    """Elements of every unique valid structure and of every reference phase (all get ML references)."""
    from pymatgen.core import Composition

    checks = checked_records()
    formulas = [checks[sid].get("reduced_formula") for sid in checked_valid_ids()]
    elements = {el.symbol for formula in formulas if formula for el in Composition(formula).elements}
    for item in REFERENCE_PHASES.values():
        elements |= reference_phase_elements(item.path)
    return sorted(elements)


def dft_structure_ids():
    """Ids that go to DFT: the check's valid ids, less those the ML pre-screen screened out."""
    if not ML["enabled"]:
        return valid_structure_ids()
    with open(checkpoints.ml_screen.get().output.dft_ids) as handle:
        return [line.strip() for line in handle if line.strip()]


def dft_start_cif(wildcards):
    """The CIF the DFT relaxation starts from: the ML-relaxed one with ml.prerelax, else the generated one."""
    return _dft_start_cif(LAYOUT, wildcards.sid, input_cif(wildcards), ML["enabled"] and ML["prerelax"])


def ml_screen_output(wildcards):
    return [LAYOUT.ml_screen] if ML["enabled"] else []


rule ml_batch:
    input:
        checks=LAYOUT.checks_table,
        cifs=ml_batch_cifs,
    output:
        record=LAYOUT.ml_batch_record("{batch}"),
    log:
        LAYOUT.log("ml", "batch_{batch}"),
    wildcard_constraints:
        batch=r"\d+",
    threads: ML["threads"]
    resources:
        runtime=ml_batch_runtime,
        mem_mb=4000,
    params:
        # The ids are a param so that a batch whose members changed reruns (and reuses what it can).
        ids=ml_batch_ids,
        # Only what changes the results: a new screen threshold or batch size reruns no ML job.
        ml=ML_RESULT_SETTINGS,
        out_dir=OUT,
    script:
        "../scripts/ml_batch.py"


rule ml_references:
    input:
        checks=LAYOUT.checks_table,
        element_cifs=lambda wildcards: sorted(STABILITY["elemental_reference_cifs"].values()),
        phase_cifs=lambda wildcards: [str(item.path) for _, item in sorted(REFERENCE_PHASES.items())],
    output:
        record=LAYOUT.ml_references,
    log:
        LAYOUT.log("ml", "references"),
    threads: ML["threads"]
    resources:
        runtime=30,
        mem_mb=4000,
    params:
        elements=lambda wildcards: ml_reference_elements(),
        element_cifs=STABILITY["elemental_reference_cifs"],
        phases=lambda wildcards: {sid: str(item.path) for sid, item in sorted(REFERENCE_PHASES.items())},
        ml=ML_RESULT_SETTINGS,
        out_dir=OUT,
    script:
        "../scripts/ml_references.py"


checkpoint ml_screen:
    input:
        checks=LAYOUT.checks_table,
        batches=all_ml_batch_records,
        references=LAYOUT.ml_references,
    output:
        screen=LAYOUT.ml_screen,
        dft_ids=LAYOUT.ml_dft_ids,
    log:
        LAYOUT.log("ml", "screen"),
    localrule: True
    params:
        threshold=ML_SCREEN_THRESHOLD,
        ids=lambda wildcards: checked_valid_ids(),
        out_dir=OUT,
    script:
        "../scripts/ml_screen.py"
