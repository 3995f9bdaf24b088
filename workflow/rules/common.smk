# Everything non-declarative: config validation, start-up checks and input functions. What
# jobs the run has (elements and their library keys, reference phases, packs, ML batches)
# is computed by dftscreen.plan, the functions `dftscreen status` calls too; every path
# under output_dir comes from dftscreen.layout, never spelled out here.
import dataclasses
import json
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from dftscreen import mpi_launch
from dftscreen.cohorts import check_cohorts
from dftscreen.dag_speed import cache_function_signatures
from dftscreen.dft_pack import PACK_NAME_PATTERN, PackMember, pack_size
from dftscreen.guards import check_run_config, check_structure_overrides, check_target_names, short_schema_error
from dftscreen.guards import acquire_output_lock, release_output_lock, warn_if_output_locked
from dftscreen.inputs import STRUCTURE_ID_PATTERN, check_reference_cifs
from dftscreen.known import check_known_sets, known_set_files
from dftscreen.ml_hull import dft_start_cif as _dft_start_cif, screen_threshold
from dftscreen.plan import RunPlan
from dftscreen.report import figure_captions, figure_names
from dftscreen.resources import ResourcePolicy
from dftscreen.targets import TARGET_KINDS, check_targets_file

try:
    validate(config, workflow.source_path("../schemas/config.schema.yaml"))
except WorkflowError as exc:
    # Snakemake's message carries the whole schema (~730 lines); say what and where instead.
    raise WorkflowError(short_schema_error(exc)) from None

OUT = config["output_dir"]
check_run_config(config)  # output_dir, DFT settings, check bounds, ML model/device (dftscreen.guards)
# Another run folder's live run holding output_dir: a dry run warns; a run is refused in `onstart` (Snakefile).
RUN_FOLDER = Path.cwd()
if workflow.is_main_process and (_held := warn_if_output_locked(OUT, RUN_FOLDER)):
    print(f"dftscreen: WARNING: {_held}", file=sys.stderr)
# The run's jobs, planned once per Snakemake start (each cluster job too): every question
# below is asked of this one object, which reads each file once (dftscreen.plan); its size-gate
# warnings on reference phases are said by the main process only.
PLAN = RunPlan(config, warnings=sys.stderr if workflow.is_main_process else None)
LAYOUT = PLAN.layout
DFT = config["dft"]
# One listing of the input folder and one reading of the input table per Snakemake
# start; the check job re-derives the same ids with the same function. An output
# folder inside the input folder is skipped (the workflow never reads its own results).
INPUTS = PLAN.inputs
if not INPUTS:
    print(f"dftscreen: WARNING: {PLAN.no_input_message()}; the results table will be empty", file=sys.stderr)
check_structure_overrides(DFT["structure_overrides"], INPUTS)
check_target_names(config["targets"]["properties"], TARGET_KINDS)
# A targets file that gives no input a target stops the run now, not at its end.
check_targets_file(
    config["targets"],
    INPUTS if config["targets"]["id_column"] == "structure_id" else [i.relative_path for i in INPUTS.values()],
)
# Every input gets its cohort (config cohorts), or the run stops now saying why (dftscreen.cohorts).
COHORTS = config["cohorts"]
COHORT_SPEC = check_cohorts(COHORTS, INPUTS.values())
DFT_SETTINGS = PLAN.settings
RESOURCES = ResourcePolicy.from_config(DFT["resources"])
# Structures per pack job (rules/pack.smk); 0: a relax and a properties job per structure.
PACK_SIZE = DFT["structures_per_pack"]
STABILITY = config["stability"]
check_reference_cifs(STABILITY["elemental_reference_cifs"])
# The check depends on one manifest of the inputs (size, mtime, path), not on thousands of
# files Snakemake would list in its output; rule input_manifest (rules/check.smk) writes it.
INPUT_MANIFEST = LAYOUT.input_manifest
INPUT_MANIFEST_FLAG = {"changed": PLAN.input_manifest_flag} if PLAN.input_manifest_flag else {}
# Competing phases for the hull (relaxed with the same preset); few files, listed once.
REFERENCE_PHASES = PLAN.reference_phases
# Every known set's path, format and table columns, checked now in one sentence (dftscreen.known).
KNOWN = check_known_sets(config["known_materials"])
# Elemental references and chosen known phases, reused by every run naming the same folder
# with the same DFT settings (see dftscreen.reflib).
LIBRARY = PLAN.library
# GPAW's launcher from the environment running Snakemake (works without activating it).
# Every path in a shell command is quoted ({x:q}), since output_dir may hold spaces
# or shell characters.
GPAW_PYTHON = f"{shlex.quote(sys.executable)} -m gpaw python"
# Figures of the HTML report and their captions (dftscreen.report.figure_names, figure_captions).
REPORT_COHORT_ORDERED = list(COHORT_SPEC.ordered) if COHORT_SPEC.source != "none" else None
REPORT_FIGURES = figure_names(config["targets"]["properties"], cohort_ordered=REPORT_COHORT_ORDERED)
REPORT_CAPTIONS = figure_captions(REPORT_FIGURES)
# Default MPI launcher outside SLURM (why --bind-to none: dftscreen.mpi_launch).
MPIEXEC = mpi_launch.MPIEXEC
ML = config["ml"]
ML_SCREEN_THRESHOLD = screen_threshold(ML, DFT["preset"])
# The share of the screened-out structures that still go to DFT (the audit; 0 without a screen).
SCREEN_AUDIT_FRACTION = ML["audit_fraction"] if ML_SCREEN_THRESHOLD is not None else 0.0
ML_RESULT_SETTINGS = {"model": ML["model"], "relax": ML["relax"]}


def input_cif(wildcards):
    """The original CIF of one structure id; for a table row, the file the check job wrote its text to."""
    return PLAN.input_cif(wildcards.sid)


def reference_phase_cif(wildcards):
    """The CIF of one user-supplied reference phase."""
    return str(REFERENCE_PHASES[wildcards.sid].path)


def global_settings_json(wildcards):
    """The run's DFT settings (no per-structure override), for references."""
    return PLAN.settings_json


def dft_settings_json(wildcards):
    """Resolved DFT settings of one structure, as JSON.

    Passed to the GPAW jobs as params, so changing the preset (or this
    structure's override) reruns exactly the jobs it affects.
    """
    return PLAN.structure_settings_json(wildcards.sid)


# The check table is read by path, not through checkpoints.check.get(): inside a cluster job
# the DAG holds only that job, the checkpoint counts as incomplete there, and Snakemake would
# then use 0 for threads and crash.
def n_sites(wildcards):
    """Number of atoms of a structure, from the check table."""
    return PLAN.check_row(wildcards.sid).get("n_sites") or 1


def tasks_for(count_atoms):
    """MPI ranks of a job whose cell has count_atoms(wildcards) atoms."""
    return lambda wildcards: RESOURCES.tasks(count_atoms(wildcards))


def _estimate(wildcards, key):
    """The size gate's estimate ``key`` of a generated structure or an element's reference cell (None: none)."""
    return PLAN.job_estimate(wildcards, key) if key else None


def runtime_for(count_atoms, estimated=False):
    """Wall time of a job; for generated structures and references (estimated=True) enlarged by the size gate's."""
    key = "dft_estimate_runtime_min" if estimated else None
    return lambda wildcards, attempt: RESOURCES.runtime_min(count_atoms(wildcards), attempt, _estimate(wildcards, key))


def mem_for(count_atoms, estimated=False):
    """Memory per rank of a job; for generated structures enlarged by the size gate's estimate."""
    key = "dft_estimate_mem_MB_per_rank" if estimated else None
    return lambda wildcards, attempt: RESOURCES.mem_mb_per_task(
        count_atoms(wildcards), attempt, _estimate(wildcards, key)
    )


def size_gate_params():
    """What the check's size gate needs, per-structure overrides included (dftscreen.plan.RunPlan.check_size_gate_params)."""
    return PLAN.check_size_gate_params


def gpaw_launcher(wildcards):
    """The ``mpi`` resource of a GPAW rule: mpiexec here, srun inside a SLURM job (dftscreen.mpi_launch)."""
    return mpi_launch.mpi_launcher(MPIEXEC)


mpi_tasks = tasks_for(n_sites)
runtime_min = runtime_for(n_sites, estimated=True)
mem_mb_per_task = mem_for(n_sites, estimated=True)


def element_n_atoms(wildcards):
    """Atoms in an element's candidate cell."""
    return PLAN.element_n_atoms(wildcards.element, getattr(wildcards, "ekey", "auto"))


def phase_n_atoms(wildcards):
    return PLAN.phase_structure(REFERENCE_PHASES[wildcards.sid].path)[1]


def competing_phase_n_atoms(wildcards):
    """Atoms of a chosen known phase, from compare_known's table (read by path, as n_sites)."""
    return PLAN.competing_phase_n_atoms(wildcards.sid)


def valid_structure_ids():
    """Ids the check checkpoint passed on to DFT (re-evaluated after it ran)."""
    return PLAN.read_ids(checkpoints.check.get().output.valid_ids)


def checked_valid_ids():
    """The check checkpoint's valid ids, read from its file when it exists.

    Not through checkpoints.check.get() once the file is there: the ML jobs list the
    check table as a plain input, so Snakemake re-evaluates them when the check reruns,
    while a .get() here would chain two checkpoints (check, then ml_screen), and
    Snakemake 9 then never re-evaluates what depends on an already finished ml_screen:
    a rerun after the ML stage would report "Nothing to be done" with DFT pending.
    """
    if not Path(LAYOUT.valid_ids).exists():
        checkpoints.check.get()  # raises until the check has run
    return PLAN.read_ids(LAYOUT.valid_ids)


def dft_structure_ids():
    """Ids that go to DFT: the check's valid ids, less those the ML pre-screen screened out, within
    the DFT budget (the same list object until its file changes, see dftscreen.plan.RunPlan.read_ids)."""
    ids = PLAN.read_ids(checkpoints.ml_screen.get().output.dft_ids) if ML["enabled"] else valid_structure_ids()
    return PLAN.within_dft_budget(ids)


def dft_start_cif(wildcards):
    """The CIF the DFT relaxation starts from: the ML-relaxed one with ml.prerelax, else the generated one."""
    return _dft_start_cif(LAYOUT, wildcards.sid, input_cif(wildcards), ML["enabled"] and ML["prerelax"])


def _stage_records(record):
    """One stage's record of every DFT structure as job outputs: none with packs (rules/pack.smk writes them)."""
    return [] if PACK_SIZE else expand(record("{sid}"), sid=dft_structure_ids())


def all_relax_records(wildcards):
    return _stage_records(LAYOUT.relax_record)


def all_properties_records(wildcards):
    return _stage_records(LAYOUT.properties_record)


def dft_relax_record_paths(wildcards):
    """Every DFT structure's relax.json path (with or without packs), in dft_structure_ids order."""
    return [LAYOUT.relax_record(sid) for sid in dft_structure_ids()]


# --- packs (dft.structures_per_pack, rules/pack.smk, dftscreen.dft_pack) ----------------
def all_pack_records(wildcards):
    if not PACK_SIZE:
        return []
    return expand(LAYOUT.pack_record("{pack}"), pack=sorted(PLAN.packs(dft_structure_ids())))


def _pack_members(wildcards):
    """The members of a pack (made once per pack: its input, resource and param functions all ask)."""
    return PLAN.pack_members(dft_structure_ids(), wildcards.pack, _pack_member)


def _pack_member(sid):
    wildcards = SimpleNamespace(sid=sid)
    return PackMember(
        structure_id=sid,
        start_cif=dft_start_cif(wildcards),
        n_sites=n_sites(wildcards),
        runtime_estimate_min=PLAN.size_estimate(sid, "dft_estimate_runtime_min"),
        mem_estimate_mb=PLAN.size_estimate(sid, "dft_estimate_mem_MB_per_rank"),
        settings_json=(dft_settings_json(wildcards) if sid in DFT["structure_overrides"] else None),
    )


def pack_start_cifs(wildcards):
    return [member.start_cif for member in _pack_members(wildcards)]


def pack_plan_json(wildcards):
    """The pack's members and dft.resources, as dftscreen.dft_pack reads them (--plan)."""
    members = [dataclasses.asdict(member) for member in _pack_members(wildcards)]
    return json.dumps({"members": members, "resources": DFT["resources"]}, sort_keys=True)


def pack_tasks(wildcards):
    # At least 2: the SLURM plugin refuses an `mpi` job of one task (a last pack of one 1-rank structure).
    return max(2, pack_size(_pack_members(wildcards), RESOURCES).tasks)


def pack_runtime_min(wildcards, attempt):
    return pack_size(_pack_members(wildcards), RESOURCES, attempt).runtime_min


def pack_mem_mb_per_task(wildcards, attempt):
    return pack_size(_pack_members(wildcards), RESOURCES, attempt).mem_mb_per_task


# --- references (rules/references.smk, rules/known.smk) --------------------------------
# Library keys of an element's candidates (also what write_partial_table matches records by).
element_keys = PLAN.element_keys


def elements_needed():
    """Elements of every structure going to DFT and of every reference phase."""
    checkpoints.check.get()  # raises until the check has run
    return PLAN.elements_needed(PLAN.formulas(dft_structure_ids()))


def all_element_records(wildcards):
    if not STABILITY["elemental_references"]:
        return []
    return [LIBRARY.element_record(el, key) for el, key in PLAN.element_jobs(elements_needed())]


def element_reference_cif(wildcards):
    """The user's CIF for this element's reference, or nothing (automatic reference)."""
    return PLAN.element_reference_cifs(wildcards.element, getattr(wildcards, "ekey", "auto"))


def element_reference_cif_option(wildcards):
    return " ".join(f"--cif {shlex.quote(cif)}" for cif in element_reference_cif(wildcards))


def element_candidate_option(wildcards):
    """``--candidate delta`` for the Δ-test candidate, ``--candidate standin`` for the stand-in of a
    ground state the size gate refuses (dftscreen.references); nothing otherwise."""
    prefix = wildcards.ekey.split("-", 1)[0]
    return f"--candidate {prefix}" if prefix in ("delta", "standin") else ""


def all_phase_records(wildcards):
    return expand(LAYOUT.phase_record("{sid}"), sid=sorted(REFERENCE_PHASES))


def chosen_phase_keys():
    """Keys of the known phases compare_known chose that get a job (re-evaluated after it ran)."""
    if not PLAN.competing_phases_wanted:
        return []
    with open(checkpoints.compare_known.get().output.phases) as handle:
        return PLAN.competing_phase_keys(json.load(handle))


def all_competing_phase_records(wildcards):
    return [LIBRARY.phase_record(key) for key in chosen_phase_keys()]


# --- known materials (rules/known.smk) ---------------------------------------------------
def dft_input_cifs(wildcards):
    """Input CIF of every structure going to DFT, in the order of valid_ids.txt."""
    return [PLAN.input_cif(sid) for sid in valid_structure_ids()]


def known_database_files(wildcards):
    """The known database's files, so that editing them reruns the relaxed structures' comparison."""
    return known_set_files(KNOWN["database"])


def relaxed_novelty_input(wildcards):
    """Novelty of the relaxed structures, when the run has a known database."""
    return [LAYOUT.relaxed_novelty_table] if KNOWN["database"]["path"] else []


def known_source_files(wildcards):
    """The known sets' files (a folder's CIFs), so that editing them reruns the comparison."""
    return known_set_files(KNOWN["database"]) + known_set_files(KNOWN["training"])


def ml_known_phase_energies(wildcards):
    """Hook: ML energies of all known entries ({entry id: eV/atom}) for compare_known to rank them by; none yet
    (the phases it chooses are ML-relaxed afterwards by ml_references for the ML hull)."""
    return []


# --- the ML stage (rules/ml.smk) -------------------------------------------------------
def ml_batches():
    """Batch index -> ids, from the check checkpoint (the same split in every Snakemake process)."""
    return PLAN.ml_batches(checked_valid_ids())


def ml_batch_ids(wildcards):
    return ml_batches()[int(wildcards.batch)]


def ml_batch_cifs(wildcards):
    return [PLAN.input_cif(sid) for sid in ml_batch_ids(wildcards)]


def ml_batch_runtime(wildcards, attempt):
    return int((10 + ML["runtime_min_per_structure"] * len(ml_batch_ids(wildcards))) * attempt)


def all_ml_batch_records(wildcards):
    if not ML["enabled"]:
        return []
    return expand(LAYOUT.ml_batch_record("{batch}"), batch=sorted(ml_batches()))


def ml_reference_elements():
    """Elements of every unique valid structure and of every reference phase (all get ML references)."""
    return PLAN.elements_needed(PLAN.formulas(checked_valid_ids()))


def ml_screen_output(wildcards):
    return [LAYOUT.ml_screen] if ML["enabled"] else []


# --- the run's end ----------------------------------------------------------------------
def target_file(wildcards):
    """The targets CSV, if one is configured (so editing it updates the table)."""
    return [config["targets"]["file"]] if config["targets"]["file"] else []


def cohort_manifest(wildcards):
    """The cohorts' manifest CSV, with source manifest (so editing it updates the table)."""
    return [COHORTS["manifest"]] if COHORTS["source"] == "manifest" else []


def get_final_output(wildcards):
    """The results table, the HTML report, and every per-structure record as an explicit target.

    Snakemake accepts missing intermediate files when the outputs downstream of
    them are newer (that is how temp() works), so deleting one structure's DFT
    folder would otherwise not rerun it.
    """
    return [
        LAYOUT.results_csv,
        LAYOUT.results_parquet,
        LAYOUT.summary,
        LAYOUT.cohorts_csv,
        LAYOUT.cohorts_json,
        LAYOUT.report_file("index.html"),
        *INPUT_MANIFEST_FLAG.values(),
        *all_relax_records(wildcards),
        *all_properties_records(wildcards),
        *all_pack_records(wildcards),
        *all_element_records(wildcards),
        *all_phase_records(wildcards),
        *all_competing_phase_records(wildcards),
        *phonon_outputs(wildcards),  # rules/phonons.smk
    ]


def write_partial_table():
    """After a failed run, write every row we can (missing DFT results as not_finished)."""
    if not Path(LAYOUT.checks_table).is_file():
        return
    # Imported here, not at the top: it pulls in pymatgen's phase diagrams and
    # matplotlib (seconds), which every Snakemake start (each cluster job too) paid.
    from dftscreen.table import table_from_results, write_table

    # The same assembler as the aggregate job's, reading the records from the results folder.
    table = table_from_results(
        OUT,
        STABILITY["elemental_references"],
        config["targets"],
        run_settings=DFT_SETTINGS,
        stable_threshold_eV_per_atom=STABILITY["stable_threshold_eV_per_atom"],
        reference_library=LIBRARY.folder,
        element_keys=element_keys,
        ml_prerelax=(ML["prerelax"] if ML["enabled"] else None),
        cohorts=COHORTS,
        dft_budget=DFT,
    )
    write_table(table, LAYOUT.partial_csv, LAYOUT.partial_parquet)
    print(
        f"dftscreen: some jobs failed; partial table with every row written to {LAYOUT.partial_csv}. "
        "Rerun the same command to redo only what failed.",
        file=sys.stderr,
    )
