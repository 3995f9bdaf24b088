# Everything non-declarative: config validation, input discovery, input functions.
import dataclasses
import json
import os
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from dftscreen.dag_speed import cache_function_signatures
from dftscreen.dft_pack import PACK_NAME_PATTERN, PackMember, pack_size, plan_packs, read_started_packs
from dftscreen.guards import (
    check_output_dir,
    check_structure_overrides,
    check_target_names,
    input_manifest,
    short_schema_error,
)
from dftscreen.io import atomic_write_text
from dftscreen.layout import ResultsLayout
from dftscreen.inputs import (
    STRUCTURE_ID_PATTERN,
    check_reference_cifs,
    discover_cifs,
    discover_inputs,
    table_row_cif_path,
)
from dftscreen.layout import ReferenceLibrary
from dftscreen.reflib import element_reference_key, phases_to_relax, settings_key
from dftscreen.resources import ResourcePolicy
from dftscreen.report import figure_names
from dftscreen.settings import deep_merge, resolve_settings
from dftscreen.targets import TARGET_KINDS, check_targets_file
from dftscreen import mpi_launch

try:
    validate(config, workflow.source_path("../schemas/config.schema.yaml"))
except WorkflowError as exc:
    # Snakemake's message carries the whole schema (~730 lines); say what and where instead.
    raise WorkflowError(short_schema_error(exc)) from None

OUT = config["output_dir"]
# Every path under output_dir comes from here (dftscreen.layout), never spelled out.
LAYOUT = ResultsLayout(OUT)
check_output_dir(OUT)
DFT = config["dft"]
# One listing of the input folder and one reading of the input table per Snakemake
# start; the check job re-derives the same ids with the same function. An output
# folder inside the input folder is skipped (the workflow never reads its own results).
INPUTS = {item.structure_id: item for item in discover_inputs(config["input"], OUT)}
if not INPUTS:
    print(
        "dftscreen: WARNING: no input structures: input.cif_dir has no *.cif file and input.table no row; "
        "the results table will be empty",
        file=sys.stderr,
    )
check_structure_overrides(DFT["structure_overrides"], INPUTS)
check_target_names(config["targets"]["properties"], TARGET_KINDS)
# A targets file that gives no input a target stops the run now, not at its end.
check_targets_file(
    config["targets"],
    INPUTS if config["targets"]["id_column"] == "structure_id" else [i.relative_path for i in INPUTS.values()],
)
DFT_SETTINGS = resolve_settings(DFT["preset"], DFT["overrides"], DFT["presets"], DFT["scf_ladder"])
DFT_SETTINGS_JSON = json.dumps(DFT_SETTINGS, sort_keys=True)
RESOURCES = ResourcePolicy.from_config(DFT["resources"])
# Structures per pack job (rules/pack.smk); 0: a relax and a properties job per structure.
PACK_SIZE = DFT["structures_per_pack"]
STABILITY = config["stability"]
check_reference_cifs(STABILITY["elemental_reference_cifs"])
# The check job depends on one manifest of the inputs (size, mtime, path), rewritten
# only when it changes, not on thousands of files Snakemake would list in its output.
INPUT_MANIFEST = LAYOUT.input_manifest
_manifest = input_manifest(item.path for item in INPUTS.values())
if not (Path(INPUT_MANIFEST).is_file() and Path(INPUT_MANIFEST).read_text() == _manifest):
    atomic_write_text(INPUT_MANIFEST, _manifest)
# Competing phases for the hull (relaxed with the same preset); few files, listed once.
REFERENCE_PHASES = (
    {item.structure_id: item for item in discover_cifs(STABILITY["reference_cif_dir"])}
    if STABILITY["reference_cif_dir"]
    else {}
)
KNOWN = config["known_materials"]
# Elemental references and chosen known phases, reused by every run naming the same folder
# with the same DFT settings (see dftscreen.reflib).
LIBRARY = ReferenceLibrary(
    STABILITY["reference_library_dir"] or LAYOUT.default_reference_library, settings_key(DFT_SETTINGS)
)
# GPAW's launcher from the environment running Snakemake (works without activating it).
# Every path in a shell command is quoted ({x:q}), since output_dir may hold spaces
# or shell characters.
GPAW_PYTHON = f"{shlex.quote(sys.executable)} -m gpaw python"
# Figures of the HTML report (fixed names, one parity plot per configured target) and their captions.
REPORT_FIGURES = figure_names(config["targets"]["properties"])
REPORT_CAPTIONS = {
    name: "parity.rst" if name.startswith("parity_") else name.replace(".png", ".rst") for name in REPORT_FIGURES
}
# Default MPI launcher outside SLURM (why --bind-to none: dftscreen.mpi_launch).
MPIEXEC = mpi_launch.MPIEXEC


def input_cif(wildcards):
    """The original CIF of one structure id; for a table row, the file the check job wrote its text to."""
    item = INPUTS[wildcards.sid]
    if item.content is not None:
        return str(table_row_cif_path(LAYOUT.inputs_dir, wildcards.sid))
    return str(item.path)


def reference_phase_cif(wildcards):
    """The CIF of one user-supplied reference phase."""
    return str(REFERENCE_PHASES[wildcards.sid].path)


def global_settings_json(wildcards):
    """The run's DFT settings (no per-structure override), for references."""
    return json.dumps(DFT_SETTINGS, sort_keys=True)


def dft_settings_json(wildcards):
    """Resolved DFT settings of one structure, as JSON.

    Passed to the GPAW jobs as params, so changing the preset (or this
    structure's override) reruns exactly the jobs it affects.
    """
    override = DFT["structure_overrides"].get(wildcards.sid)
    if not override:
        # The same text for every structure without an override: made once (the
        # dry run of 10,000 structures asked for it 30,000 times).
        return DFT_SETTINGS_JSON
    return json.dumps(deep_merge(DFT_SETTINGS, override), sort_keys=True)


_CHECK_ROWS = {}


def _check_row(sid):
    """A structure's row of the check checkpoint's table (read once).

    Read by path, not through checkpoints.check.get(): inside a cluster job the
    DAG holds only that job, the checkpoint counts as incomplete there, and
    Snakemake would then use 0 for threads and crash.
    """
    if not _CHECK_ROWS:
        with open(rules.check.output.table) as handle:
            _CHECK_ROWS.update({r["structure_id"]: r for r in json.load(handle)})
    return _CHECK_ROWS.get(sid, {})


def n_sites(wildcards):
    """Number of atoms of a structure, from the check table."""
    return _check_row(wildcards.sid).get("n_sites") or 1


def _estimate(wildcards, key):
    """The size gate's estimate for a structure (dftscreen.size_gate, with its margin), or None."""
    from dftscreen.size_gate import MARGIN

    value = _check_row(wildcards.sid).get(key)
    return None if value is None else MARGIN * value


def tasks_for(count_atoms):
    """MPI ranks of a job whose cell has count_atoms(wildcards) atoms."""
    return lambda wildcards: RESOURCES.tasks(count_atoms(wildcards))


def runtime_for(count_atoms, estimated=False):
    """Wall time of a job; for generated structures (estimated=True) enlarged by the size gate's estimate."""
    if estimated:
        return lambda wildcards, attempt: RESOURCES.runtime_min(
            count_atoms(wildcards), attempt, _estimate(wildcards, "dft_estimate_runtime_min")
        )
    return lambda wildcards, attempt: RESOURCES.runtime_min(count_atoms(wildcards), attempt)


def mem_for(count_atoms, estimated=False):
    """Memory per rank of a job; for generated structures enlarged by the size gate's estimate."""
    if estimated:
        return lambda wildcards, attempt: RESOURCES.mem_mb_per_task(
            count_atoms(wildcards), attempt, _estimate(wildcards, "dft_estimate_mem_MB_per_rank")
        )
    return lambda wildcards, attempt: RESOURCES.mem_mb_per_task(count_atoms(wildcards), attempt)


def size_gate_params():
    """What the check's size gate needs: the run's cutoff and k-point density, and dft.resources."""
    gpaw = DFT_SETTINGS["gpaw"]
    return {
        "settings": {"gpaw": {"ecut_eV": gpaw["ecut_eV"], "kpt_density_per_A": gpaw["kpt_density_per_A"]}},
        "resources": DFT["resources"],
    }


def gpaw_launcher(wildcards):
    """The ``mpi`` resource of a GPAW rule: mpiexec here, srun inside a SLURM job (dftscreen.mpi_launch)."""
    return mpi_launch.mpi_launcher(MPIEXEC)


mpi_tasks = tasks_for(n_sites)
runtime_min = runtime_for(n_sites, estimated=True)
mem_mb_per_task = mem_for(n_sites, estimated=True)

_ELEMENT_N_ATOMS = {}


def element_n_atoms(wildcards):
    """Atoms in an element's candidate cell (imported here: building it needs ASE, not every parse)."""
    key = (wildcards.element, getattr(wildcards, "ekey", "auto"))
    if key not in _ELEMENT_N_ATOMS:
        from dftscreen.references import delta_test_candidate, reference_n_atoms

        if key[1].startswith("delta-"):
            candidate = delta_test_candidate(wildcards.element)
            _ELEMENT_N_ATOMS[key] = len(candidate.atoms) if candidate else 1
        else:
            cifs = element_reference_cif(wildcards)
            _ELEMENT_N_ATOMS[key] = reference_n_atoms(wildcards.element, cif=cifs[0] if cifs else None)
    return _ELEMENT_N_ATOMS[key]


def phase_n_atoms(wildcards):
    return _phase_structure(REFERENCE_PHASES[wildcards.sid].path)[1]


_ID_FILES = {}


def read_ids(path):
    """The ids in a one-id-per-line file, read once per version of the file.

    The same list object until the file changes: callers must not modify it. With
    packs, the input functions of 1,250 packs ask for the DFT ids about 9,000 times in a
    100,000-input dry run; reading 10,000 lines each time took 17 s.
    """
    stat = os.stat(path)
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _ID_FILES:
        for old in [k for k in _ID_FILES if k[0] == key[0]]:
            del _ID_FILES[old]
        with open(path) as handle:
            _ID_FILES[key] = [line.strip() for line in handle if line.strip()]
    return _ID_FILES[key]


def valid_structure_ids():
    """Ids the check checkpoint passed on to DFT (re-evaluated after it ran)."""
    return read_ids(checkpoints.check.get().output.valid_ids)


def all_relax_records(wildcards):
    """Every relax.json as a job output: none with packs (rules/pack.smk writes them, not as outputs)."""
    if PACK_SIZE:
        return []
    # dft_structure_ids (rules/ml.smk): the valid ids less those the ML pre-screen screened out.
    return expand(LAYOUT.relax_record("{sid}"), sid=dft_structure_ids())


def all_properties_records(wildcards):
    if PACK_SIZE:
        return []
    return expand(LAYOUT.properties_record("{sid}"), sid=dft_structure_ids())


def dft_relax_record_paths(wildcards):
    """Every DFT structure's relax.json path (with or without packs), in dft_structure_ids order."""
    return [LAYOUT.relax_record(sid) for sid in dft_structure_ids()]


# --- packs (dft.structures_per_pack, rules/pack.smk, dftscreen.dft_pack) ----------------
_PACKS = {}


_STARTED_PACKS = {}


def started_packs():
    """Members of the packs that have started (dftscreen.dft_pack.read_started_packs), read
    again only when their folder changed: every pack's functions ask, 9,000 times in a
    100,000-input dry run. Each file is written by rename, which changes the folder's mtime."""
    try:
        version = os.stat(LAYOUT.pack_members_dir).st_mtime_ns
    except FileNotFoundError:
        version = None
    if _STARTED_PACKS.get("version", -1) != version:
        _STARTED_PACKS.update(version=version, packs=read_started_packs(LAYOUT))
    return _STARTED_PACKS["version"], _STARTED_PACKS["packs"]


def dft_packs():
    """Pack name -> structure ids (dftscreen.dft_pack.plan_packs): packs that started keep
    their structures, the others form new packs. Planned once per id list and version of the
    started packs (the input, resource and param functions of every pack ask)."""
    ids = dft_structure_ids()
    version, started = started_packs()
    if _PACKS.get("ids") is not ids or _PACKS.get("version") != version:
        _PACKS.clear()
        _PACKS.update(ids=ids, version=version, packs=plan_packs(ids, PACK_SIZE, started), members={})
    return _PACKS["packs"]


def all_pack_records(wildcards):
    if not PACK_SIZE:
        return []
    return expand(LAYOUT.pack_record("{pack}"), pack=sorted(dft_packs()))


def _pack_members(wildcards):
    """The members of a pack (made once per pack: its input, resource and param functions all ask)."""
    packs = dft_packs()
    members = _PACKS["members"]
    pack = wildcards.pack
    if pack not in members:
        members[pack] = _new_pack_members(packs[pack])
    return members[pack]


def _new_pack_members(ids):
    return [
        PackMember(
            structure_id=sid,
            start_cif=dft_start_cif(SimpleNamespace(sid=sid)),
            n_sites=n_sites(SimpleNamespace(sid=sid)),
            runtime_estimate_min=_estimate(SimpleNamespace(sid=sid), "dft_estimate_runtime_min"),
            mem_estimate_mb=_estimate(SimpleNamespace(sid=sid), "dft_estimate_mem_MB_per_rank"),
            settings_json=(dft_settings_json(SimpleNamespace(sid=sid)) if sid in DFT["structure_overrides"] else None),
        )
        for sid in ids
    ]


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


def elements_needed():
    """Elements of every structure going to DFT and of every reference phase."""
    from pymatgen.core import Composition

    with open(checkpoints.check.get().output.table) as handle:
        checks = {r["structure_id"]: r for r in json.load(handle)}
    formulas = [checks[sid].get("reduced_formula") for sid in dft_structure_ids()]
    elements = {el.symbol for formula in formulas if formula for el in Composition(formula).elements}
    for item in REFERENCE_PHASES.values():
        elements |= reference_phase_elements(item.path)
    return sorted(elements)


_PHASE_STRUCTURES = {}


def _phase_structure(path):
    """Elements and number of atoms of a reference phase's CIF (read once)."""
    if path not in _PHASE_STRUCTURES:
        from dftscreen.cif_reader import read_structure

        try:
            structure, _ = read_structure(path)
            _PHASE_STRUCTURES[path] = ({el.symbol for el in structure.composition.elements}, len(structure))
        except Exception:
            # An unreadable reference phase fails in its own relax job, with the reason.
            _PHASE_STRUCTURES[path] = (set(), 1)
    return _PHASE_STRUCTURES[path]


def reference_phase_elements(path):
    return _phase_structure(path)[0]


_ELEMENT_KEYS = {}


def element_keys(element):
    """Library keys of an element's candidate structures: ``cif-<hash>`` of the user's CIF, or
    ``auto-<fingerprint>`` (plus ``delta-<fingerprint>`` when the Δ-test structure is another
    crystal, e.g. α-Sn beside β-Sn): a changed starting structure never reuses an old result."""
    if element not in _ELEMENT_KEYS:
        cif = STABILITY["elemental_reference_cifs"].get(element)
        if cif:
            _ELEMENT_KEYS[element] = [element_reference_key(cif)]
        else:
            from dftscreen.references import automatic_candidate_keys

            _ELEMENT_KEYS[element] = automatic_candidate_keys(element)
    return _ELEMENT_KEYS[element]


def all_element_records(wildcards):
    if not STABILITY["elemental_references"]:
        return []
    return [LIBRARY.element_record(el, key) for el in elements_needed() for key in element_keys(el)]


def element_reference_cif(wildcards):
    """The user's CIF for this element's reference, or nothing (automatic reference)."""
    if not getattr(wildcards, "ekey", "auto").startswith("cif-"):
        return []
    return [STABILITY["elemental_reference_cifs"][wildcards.element]]


def element_candidate_option(wildcards):
    """``--candidate delta`` for the Δ-test candidate; nothing otherwise."""
    return "--candidate delta" if wildcards.ekey.startswith("delta-") else ""


def dft_input_cifs(wildcards):
    """Input CIF of every structure going to DFT, in the order of valid_ids.txt."""
    return [input_cif(SimpleNamespace(sid=sid)) for sid in valid_structure_ids()]


def _known_set_files(source):
    """A known set's file, or a folder's CIFs (none when the set is not given)."""
    path = source["path"]
    if path and Path(path).is_dir():
        return sorted(str(item.path) for item in discover_cifs(path))
    return [path] if path else []


def known_database_files(wildcards):
    """The known database's files, so that editing them reruns the relaxed structures' comparison."""
    return _known_set_files(KNOWN["database"])


def relaxed_novelty_input(wildcards):
    """Novelty of the relaxed structures, when the run has a known database."""
    return [LAYOUT.relaxed_novelty_table] if KNOWN["database"]["path"] else []


def known_source_files(wildcards):
    """The known sets' files (a folder's CIFs), so that editing them reruns the comparison."""
    return _known_set_files(KNOWN["database"]) + _known_set_files(KNOWN["training"])


def ml_known_phase_energies(wildcards):
    """Hook for the ML stage (issue 15): its energies of the known phases, a JSON {entry id: eV/atom}.

    When that stage exists, return its output here; compare_known then ranks the known
    phases on the ML hull instead of the known set's own energies. Nothing until then.
    """
    return []


def competing_phases_wanted():
    return (
        bool(KNOWN["database"]["path"]) and KNOWN["competing_phases"]["enabled"] and STABILITY["elemental_references"]
    )


def chosen_phase_keys():
    """Keys of the known phases compare_known chose (re-evaluated after it ran)."""
    if not competing_phases_wanted():
        return []
    with open(checkpoints.compare_known.get().output.phases) as handle:
        chosen = json.load(handle)
    # An elemental phase with the very structure of an element's candidate is computed once, as the element.
    return phases_to_relax(chosen, element_keys, STABILITY["elemental_references"])


def all_competing_phase_records(wildcards):
    return [LIBRARY.phase_record(key) for key in chosen_phase_keys()]


_CHOSEN_PHASE_SITES = {}


def competing_phase_n_atoms(wildcards):
    """Atoms of a chosen known phase, from compare_known's table (read by path, as n_sites)."""
    if not _CHOSEN_PHASE_SITES:
        with open(LAYOUT.competing_phases) as handle:
            _CHOSEN_PHASE_SITES.update({p["phase_key"]: p["n_sites"] for p in json.load(handle)["phases"]})
    return _CHOSEN_PHASE_SITES.get(wildcards.sid, 1)


def element_reference_cif_option(wildcards):
    return " ".join(f"--cif {shlex.quote(cif)}" for cif in element_reference_cif(wildcards))


def all_phase_records(wildcards):
    return expand(LAYOUT.phase_record("{sid}"), sid=sorted(REFERENCE_PHASES))


def target_file(wildcards):
    """The targets CSV, if one is configured (so editing it updates the table)."""
    return [config["targets"]["file"]] if config["targets"]["file"] else []


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
        LAYOUT.report_file("index.html"),
        *all_relax_records(wildcards),
        *all_properties_records(wildcards),
        *all_pack_records(wildcards),
        *all_element_records(wildcards),
        *all_phase_records(wildcards),
        *all_competing_phase_records(wildcards),
    ]


def write_partial_table():
    """After a failed run, write every row we can (missing DFT results as not_finished)."""
    checks_path = Path(LAYOUT.checks_table)
    if not checks_path.is_file():
        return
    # Imported here, not at the top: it pulls in pymatgen's phase diagrams and
    # matplotlib (seconds), which every Snakemake start (each cluster job too) paid.
    from dftscreen.aggregate import add_verdicts, table_from_results, write_table

    table = table_from_results(
        OUT,
        STABILITY["elemental_references"],
        config["targets"],
        run_settings=DFT_SETTINGS,
        stable_threshold_eV_per_atom=STABILITY["stable_threshold_eV_per_atom"],
        reference_library=LIBRARY.folder,
        element_keys=element_keys,
    )
    if config["ml"]["enabled"]:
        from dftscreen.ml import add_ml_columns

        # Verdicts again: they read the ML columns added here.
        table = add_verdicts(
            add_ml_columns(table, OUT, config["ml"]["prerelax"]), STABILITY["stable_threshold_eV_per_atom"]
        )
    write_table(table, LAYOUT.partial_csv, LAYOUT.partial_parquet)
    print(
        f"dftscreen: some jobs failed; partial table with every row written to {LAYOUT.partial_csv}. "
        "Rerun the same command to redo only what failed.",
        file=sys.stderr,
    )


# --- the ML stage (rules/ml.smk) -------------------------------------------------------
from dftscreen.ml import batch_index, dft_start_cif as _dft_start_cif, n_batches, screen_threshold

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
    return read_ids(LAYOUT.valid_ids)


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
    """Ids that go to DFT: the check's valid ids, less those the ML pre-screen screened out
    (the same list object until its file changes, see read_ids)."""
    if not ML["enabled"]:
        return valid_structure_ids()
    return read_ids(checkpoints.ml_screen.get().output.dft_ids)


def dft_start_cif(wildcards):
    """The CIF the DFT relaxation starts from: the ML-relaxed one with ml.prerelax, else the generated one."""
    return _dft_start_cif(LAYOUT, wildcards.sid, input_cif(wildcards), ML["enabled"] and ML["prerelax"])


def ml_screen_output(wildcards):
    return [LAYOUT.ml_screen] if ML["enabled"] else []
